/**
 * Where an NBD client's writes go: one local file, never the store. Layout
 * (all big-endian): a 4 KiB header, then a bitmap of the disk's 4 KiB blocks
 * (a set bit: the block's bytes live here), padded to 4 KiB, then the blocks
 * at their own offsets in a sparse data area. The bitmap reaches the file only
 * on flush, after the data it describes is on disk (data fsync, bitmap write,
 * fsync), so after a crash a set bit always means durable bytes; writes not
 * yet flushed may be lost, which is what NBD promises. The header names the
 * image's manifest: an overlay is refused for any other image.
 */
import fsp from 'node:fs/promises';
import { defineStruct } from '../util/struct.js';
import { VmdnError } from '../errors.js';
import type { Digest } from '../store/digest.js';

export const OVERLAY_BLOCK = 4096;
const MAGIC = new TextEncoder().encode('VMDNOVL1');
const VERSION = 1;
const HEADER_SIZE = 4096;

const Header = defineStruct('overlay.header', 64, 'be', [
  { name: 'magic', type: 'bytes:8', offset: 0 },
  { name: 'version', type: 'u32', offset: 8 },
  { name: 'blockSize', type: 'u32', offset: 12 },
  { name: 'virtualSize', type: 'u64', offset: 16 },
  { name: 'manifest', type: 'bytes:32', offset: 24 },
] as const);

const roundUp = (n: number, to: number) => Math.ceil(n / to) * to;

export class Overlay {
  readonly blocks: number;
  private readonly dataOffset: number;
  /** Bitmap pages (4 KiB of bits each) changed since the last flush. */
  private readonly dirtyPages = new Set<number>();
  private written = 0;

  private constructor(
    readonly file: string,
    private readonly fh: fsp.FileHandle,
    readonly virtualSize: number,
    private readonly bitmap: Uint8Array,
  ) {
    this.blocks = Math.ceil(virtualSize / OVERLAY_BLOCK);
    this.dataOffset = HEADER_SIZE + bitmap.length;
    for (let i = 0; i < this.blocks; i++) if (this.has(i)) this.written++;
  }

  /** Open `file` for the image with manifest `manifest`: created if absent, else checked and reused. */
  static async open(file: string, virtualSize: number, manifest: Digest): Promise<Overlay> {
    const blocks = Math.ceil(virtualSize / OVERLAY_BLOCK);
    const bitmapBytes = roundUp(Math.ceil(blocks / 8), OVERLAY_BLOCK);
    const digest = Buffer.from(manifest, 'hex');
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, 'wx+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return Overlay.reopen(file, virtualSize, digest, bitmapBytes);
    }
    try {
      const header = new Uint8Array(HEADER_SIZE);
      Header.write({ magic: MAGIC, version: VERSION, blockSize: OVERLAY_BLOCK, virtualSize: BigInt(virtualSize), manifest: digest }, header);
      await fh.write(header, 0, header.length, 0);
      await fh.truncate(HEADER_SIZE + bitmapBytes + blocks * OVERLAY_BLOCK);
      await fh.sync();
      return new Overlay(file, fh, virtualSize, new Uint8Array(bitmapBytes));
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  private static async reopen(file: string, virtualSize: number, digest: Buffer, bitmapBytes: number): Promise<Overlay> {
    const fh = await fsp.open(file, 'r+');
    try {
      const head = new Uint8Array(Header.size);
      const { bytesRead } = await fh.read(head, 0, head.length, 0);
      const bad = (why: string) => new VmdnError('E_USAGE', `${file} is not an overlay for this image: ${why}`, { overlay: file });
      if (bytesRead < Header.size) throw bad('too short');
      const h = Header.parse(head);
      if (!Buffer.from(h.magic).equals(MAGIC) || h.version !== VERSION || h.blockSize !== OVERLAY_BLOCK) throw bad('not a vmdn overlay (version 1)');
      if (h.virtualSize !== BigInt(virtualSize) || !Buffer.from(h.manifest).equals(digest)) {
        throw bad(`it was made for manifest ${Buffer.from(h.manifest).toString('hex').slice(0, 12)}`);
      }
      const bitmap = new Uint8Array(bitmapBytes);
      const r = await fh.read(bitmap, 0, bitmapBytes, HEADER_SIZE);
      if (r.bytesRead !== bitmapBytes) throw bad('truncated bitmap');
      return new Overlay(file, fh, virtualSize, bitmap);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  has(block: number): boolean {
    return (this.bitmap[block >>> 3]! & (1 << (block & 7))) !== 0;
  }

  /** The first block in [from, to) that is written (`set`) or not, else `to`; skips whole bitmap bytes. */
  find(from: number, to: number, set: boolean): number {
    const skip = set ? 0 : 0xff;
    for (let b = from; b < to; ) {
      if ((b & 7) === 0 && b + 8 <= to && this.bitmap[b >>> 3] === skip) {
        b += 8;
        continue;
      }
      if (this.has(b) === set) return b;
      b++;
    }
    return to;
  }

  /** Blocks whose bytes live here. */
  get writtenBlocks(): number {
    return this.written;
  }

  /** Read `length` bytes at disk offset `offset` from the data area (only meaningful for written blocks). */
  async read(offset: number, out: Uint8Array): Promise<void> {
    let done = 0;
    while (done < out.length) {
      const { bytesRead } = await this.fh.read(out, done, out.length - done, this.dataOffset + offset + done);
      if (bytesRead === 0) throw new VmdnError('E_IO', `overlay ${this.file} is truncated`, { overlay: this.file });
      done += bytesRead;
    }
  }

  /** Write whole blocks' bytes at a block-aligned disk offset and mark them (durable at the next flush). */
  async writeBlocks(offset: number, data: Uint8Array): Promise<void> {
    if (offset % OVERLAY_BLOCK !== 0) throw new VmdnError('E_INTERNAL', 'overlay writes are block-aligned');
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, this.dataOffset + offset + done);
      done += bytesWritten;
    }
    const first = offset / OVERLAY_BLOCK;
    const last = Math.ceil((offset + data.length) / OVERLAY_BLOCK);
    for (let b = first; b < last; b++) {
      if (this.has(b)) continue;
      this.bitmap[b >>> 3]! |= 1 << (b & 7);
      this.written++;
      this.dirtyPages.add(Math.floor((b >>> 3) / OVERLAY_BLOCK));
    }
  }

  /** Data to disk, then the bitmap pages that describe it. */
  async flush(): Promise<void> {
    await this.fh.datasync();
    if (this.dirtyPages.size === 0) return;
    const pages = [...this.dirtyPages].sort((a, b) => a - b);
    this.dirtyPages.clear();
    for (const p of pages) {
      const at = p * OVERLAY_BLOCK;
      await this.fh.write(this.bitmap, at, OVERLAY_BLOCK, HEADER_SIZE + at);
    }
    await this.fh.datasync();
  }

  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.fh.close();
    }
  }
}
