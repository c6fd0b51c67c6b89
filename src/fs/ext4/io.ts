/** Block-level access for the ext4 reader: bounds-checked reads, a small LRU, bounded warnings. */
import type { Disk } from '../../container/disk.js';
import { VmdnError } from '../../errors.js';
import type { Ext4Super } from './superblock.js';

/** Map-based LRU: Map keeps insertion order, so re-inserting on hit moves a key to the back. */
export class Lru<K, V> {
  private readonly m = new Map<K, V>();
  constructor(private readonly max: number) {}
  get(k: K): V | undefined {
    const v = this.m.get(k);
    if (v !== undefined) {
      this.m.delete(k);
      this.m.set(k, v);
    }
    return v;
  }
  set(k: K, v: V): void {
    this.m.delete(k);
    this.m.set(k, v);
    if (this.m.size > this.max) this.m.delete(this.m.keys().next().value as K);
  }
}

// A corrupt image could produce one warning per inode; keep memory bounded.
const MAX_WARNINGS = 1000;

export class Ext4Io {
  readonly bs: number;
  private readonly blockCache = new Lru<number, Uint8Array>(64);
  constructor(
    readonly disk: Disk,
    readonly sb: Ext4Super,
    readonly warnings: string[],
  ) {
    this.bs = sb.blockSize;
  }

  warn(msg: string): void {
    if (this.warnings.length < MAX_WARNINGS) this.warnings.push(msg);
    else if (this.warnings.length === MAX_WARNINGS) this.warnings.push('ext4: further warnings suppressed');
  }

  /** Throw E_FORMAT unless blocks [b, b+count) lie inside the filesystem (block 0 only for the boot area). */
  checkRange(b: number, count: number, what: string): void {
    if (!Number.isSafeInteger(b) || count < 1 || b < this.sb.firstDataBlock || b === 0 || b + count > this.sb.blocksCount) {
      throw new VmdnError('E_FORMAT', `ext4: ${what}: block range ${b}+${count} outside the filesystem (${this.sb.blocksCount} blocks)`, { block: b });
    }
  }

  async readBlocks(b: number, count: number, what: string): Promise<Uint8Array> {
    this.checkRange(b, count, what);
    return this.disk.read(b * this.bs, count * this.bs);
  }

  /** A single metadata block through the LRU (extent index blocks, xattr blocks, bitmaps). */
  async metaBlock(b: number, what: string): Promise<Uint8Array> {
    const hit = this.blockCache.get(b);
    if (hit) return hit;
    const buf = await this.readBlocks(b, 1, what);
    this.blockCache.set(b, buf);
    return buf;
  }
}

export function formatError(ino: number | undefined, msg: string, data: Record<string, unknown> = {}): VmdnError {
  return new VmdnError('E_FORMAT', ino === undefined ? `ext4: ${msg}` : `ext4 inode ${ino}: ${msg}`, ino === undefined ? data : { ino, ...data });
}
