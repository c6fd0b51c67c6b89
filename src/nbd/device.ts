/**
 * The block device an NBD client sees: a base Disk (a stored image, read
 * through images/manifest-disk.ts and so verified) with an Overlay on top.
 * Reads merge the overlay's written blocks over the base; writes land in the
 * overlay in whole 4 KiB blocks (a partial block is completed from what the
 * client saw before). Without an overlay the device is read-only.
 */
import type { Disk } from '../container/disk.js';
import { OVERLAY_BLOCK, type Overlay } from './overlay.js';
import { VmdnError } from '../errors.js';

const BASE_PIECE = 4 << 20;

export class BlockDevice {
  readonly size: number;
  /** Overlay writes one at a time: two partial writes to one block must not both start from the old bytes. */
  private writing: Promise<unknown> = Promise.resolve();
  /** Told every range read from the base image (not the overlay), before it is read: a ProfileRecorder's `touch`. */
  onBaseRead: ((offset: number, length: number) => void) | undefined;

  constructor(
    private readonly base: Disk,
    readonly overlay: Overlay | null,
  ) {
    this.size = base.virtualSize;
  }

  get readOnly(): boolean {
    return this.overlay === null;
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new VmdnError('E_USAGE', `range ${offset}+${length} is outside the disk (${this.size} bytes)`);
    }
  }

  /**
   * The base's bytes in pieces one after another: a piece's chunks are fetched
   * together, and only a piece's worth of them is decoded at a time, whatever
   * the request's size.
   */
  private async readBase(offset: number, into: Uint8Array): Promise<void> {
    for (let at = 0; at < into.length; at += BASE_PIECE) {
      const n = Math.min(BASE_PIECE, into.length - at);
      into.set(await this.baseRead(offset + at, n), at);
    }
  }

  private baseRead(offset: number, length: number): Promise<Uint8Array> {
    this.onBaseRead?.(offset, length);
    return this.base.read(offset, length);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.checkRange(offset, length);
    const ov = this.overlay;
    if (length <= BASE_PIECE && (!ov || ov.writtenBlocks === 0)) return this.baseRead(offset, length);
    const out = new Uint8Array(length);
    if (!ov || ov.writtenBlocks === 0) {
      await this.readBase(offset, out);
      return out;
    }
    const end = offset + length;
    // runs of blocks that are all in the overlay, or all not
    let b = Math.floor(offset / OVERLAY_BLOCK);
    const parts: Array<Promise<void>> = [];
    for (let at = offset; at < end; ) {
      const inOverlay = ov.has(b);
      let runEnd = at;
      while (runEnd < end && ov.has(b) === inOverlay) runEnd = Math.min(end, ++b * OVERLAY_BLOCK);
      const into = out.subarray(at - offset, runEnd - offset);
      parts.push(inOverlay ? ov.read(at, into) : this.readBase(at, into));
      at = runEnd;
    }
    await Promise.all(parts);
    return out;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.writing.then(fn, fn);
    this.writing = p.catch(() => undefined);
    return p;
  }

  private requireOverlay(): Overlay {
    if (!this.overlay) throw new VmdnError('E_USAGE', 'read-only export', { errno: 'EPERM' });
    return this.overlay;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    const ov = this.requireOverlay();
    this.checkRange(offset, data.length);
    if (data.length === 0) return;
    return this.serial(async () => {
      const start = Math.floor(offset / OVERLAY_BLOCK) * OVERLAY_BLOCK;
      const stop = Math.ceil((offset + data.length) / OVERLAY_BLOCK) * OVERLAY_BLOCK;
      if (start === offset && stop === offset + data.length) return ov.writeBlocks(offset, data);
      // complete the first and last blocks with the bytes the client would read there
      const buf = new Uint8Array(stop - start);
      const fill = async (blockStart: number) => {
        const n = Math.min(OVERLAY_BLOCK, this.size - blockStart);
        buf.set(await this.read(blockStart, n), blockStart - start);
      };
      if (offset > start) await fill(start);
      const lastBlock = stop - OVERLAY_BLOCK;
      if (offset + data.length < stop && !(lastBlock === start && offset > start)) await fill(lastBlock);
      buf.set(data, offset - start);
      await ov.writeBlocks(start, buf);
    });
  }

  /** Zeros written into the overlay, bounded pieces at a time (a zeroed range of the base is overlay data too). */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.requireOverlay();
    this.checkRange(offset, length);
    const piece = 1 << 20;
    const zeros = new Uint8Array(piece);
    for (let at = offset; at < offset + length; at += piece) {
      await this.write(at, zeros.subarray(0, Math.min(piece, offset + length - at)));
    }
  }

  async flush(): Promise<void> {
    if (this.overlay) await this.serial(() => this.overlay!.flush());
  }
}
