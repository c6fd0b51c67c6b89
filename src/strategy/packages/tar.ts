/**
 * Cutting a package's data member (an uncompressed tar, arriving in pieces)
 * into chunks so that each regular member of at least `minFile` bytes gets
 * exactly the chunks the files strategy and file-aware cuts give the same
 * file in an image: its content is chunked on its own, from its first byte.
 * A package's files then share objects with every image holding them -- in
 * any strategy, in any filesystem (the EFI partition's kernel copy is the
 * linux-image package's). Headers and small members between them are chunked
 * as runs of their own.
 */
import type { WritableStore } from '../../store/types.js';
import type { Digest } from '../../store/digest.js';
import { MemDisk } from '../../container/mem-disk.js';
import { importChunks } from '../chunks/import.js';
import type { ChunkerParams } from '../chunker.js';
import type { ChunkEntry } from '../../model/manifest.js';
import { VmdnError } from '../../errors.js';

const BLOCK = 512;

/** A tar header's numeric field: octal text, or base-256 when the high bit of the first byte is set. */
export function tarNumber(f: Uint8Array): number {
  if (f[0]! & 0x80) {
    let n = f[0]! & 0x7f;
    for (let i = 1; i < f.length; i++) n = n * 256 + f[i]!;
    if (!Number.isSafeInteger(n)) throw new VmdnError('E_FORMAT', 'tar size out of range');
    return n;
  }
  const s = Buffer.from(f).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]*$/.test(s)) throw new VmdnError('E_FORMAT', `tar size field ${JSON.stringify(s)} is not octal`);
  return s ? parseInt(s, 8) : 0;
}

/** Where regular members of at least `minFile` bytes have their data, found header by header as bytes arrive. */
export class TarBoundaries {
  private pos = 0;
  private nextHeader = 0;
  private header = Buffer.alloc(0);
  private ended = false;
  constructor(private readonly minFile: number) {}

  /** Feed the next bytes; returns absolute offsets where a big member's data starts or ends. */
  feed(b: Uint8Array): number[] {
    const cuts: number[] = [];
    let i = 0;
    while (i < b.length && !this.ended) {
      const abs = this.pos + i;
      if (abs < this.nextHeader) {
        i += Math.min(b.length - i, this.nextHeader - abs);
        continue;
      }
      const take = Math.min(BLOCK - this.header.length, b.length - i);
      this.header = Buffer.concat([this.header, b.subarray(i, i + take)]);
      i += take;
      if (this.header.length < BLOCK) break;
      const h = this.header;
      this.header = Buffer.alloc(0);
      const at = this.nextHeader;
      if (h.every((x) => x === 0)) {
        this.ended = true; // end of archive: the rest is padding
        break;
      }
      const size = tarNumber(h.subarray(124, 136));
      const type = h[156];
      const data = at + BLOCK;
      // '0', NUL (old regular) and '7' (contiguous) are regular files; others (links, pax, long names) are not
      if ((type === 0x30 || type === 0 || type === 0x37) && size >= this.minFile) cuts.push(data, data + size);
      this.nextHeader = data + Math.ceil(size / BLOCK) * BLOCK;
    }
    this.pos += b.length;
    return cuts;
  }
}

/** Chunks a tar stream segment by segment: big members alone, the bytes between them as runs. */
export class TarChunks {
  readonly entries: ChunkEntry[] = [];
  length = 0;
  private segStart = 0;
  private seg: Uint8Array[] = [];
  private pending: number[] = [];
  private readonly bounds: TarBoundaries;

  constructor(
    private readonly chunker: ChunkerParams,
    minFile: number,
    private readonly store: WritableStore,
    private readonly opts: { signal?: AbortSignal; onAdded?: (d: Digest) => void },
  ) {
    this.bounds = new TarBoundaries(minFile);
  }

  async push(b: Uint8Array): Promise<void> {
    // a member's end is known at its header, usually pieces before its data has arrived
    this.pending.push(...this.bounds.feed(b));
    let off = this.length;
    let rest = b;
    const end = this.length + b.length;
    while (this.pending.length && this.pending[0]! <= end) {
      const cut = this.pending.shift()!;
      this.seg.push(rest.subarray(0, cut - off));
      rest = rest.subarray(cut - off);
      off = cut;
      await this.flush(cut);
    }
    this.seg.push(rest);
    this.length = end;
  }

  async finish(): Promise<ChunkEntry[]> {
    await this.flush(this.length);
    return this.entries;
  }

  /** Chunk the segment [segStart, end) as one run, exactly as a file of that content is chunked. */
  private async flush(end: number): Promise<void> {
    if (end > this.segStart) {
      const disk = new MemDisk(Buffer.concat(this.seg));
      const { manifest } = await importChunks(disk, this.store, { chunker: this.chunker, signal: this.opts.signal, onAdded: this.opts.onAdded, maxInflight: 8 });
      for (const [o, l, d] of manifest.chunks) this.entries.push([this.segStart + o, l, d]);
    }
    this.seg = [];
    this.segStart = end;
  }
}
