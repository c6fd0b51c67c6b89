/**
 * The block device an NBD client sees: a base Disk (a stored image, read
 * through images/manifest-disk.ts and so verified) with an Overlay on top.
 * Reads merge the overlay's written blocks over the base; writes land in the
 * overlay in whole 4 KiB blocks (a partial block is completed from what the
 * client saw before). Without an overlay the device is read-only.
 */
import type { Disk } from '../container/disk.js';
import { OVERLAY_BLOCK, type Overlay } from './overlay.js';
import { AllocationMap, type Run } from './allocation.js';
import { VmdnError } from '../errors.js';

const BASE_PIECE = 4 << 20;

/** A base that can hand out its bytes as views without copying (ManifestDisk). */
interface PieceReader {
  readPieces(offset: number, length: number): Promise<Uint8Array[]>;
}

/** Pieces of a read, valid until `release` is called (once: after the socket took them). */
export interface Lease {
  pieces: Uint8Array[];
  release(): void;
}

/** A base whose views are held until released (SlabDisk: they are slots of a shared slab that are reused). */
interface LeaseReader {
  readLeased(offset: number, length: number): Promise<Lease>;
}

const noRelease = () => {};

export class BlockDevice {
  readonly size: number;
  /** Overlay writes one at a time: two partial writes to one block must not both start from the old bytes. */
  private writing: Promise<unknown> = Promise.resolve();
  /** Told every range read from the base image (not the overlay), before it is read: a ProfileRecorder's `touch`. */
  onBaseRead: ((offset: number, length: number) => void) | undefined;

  private readonly allocation: AllocationMap;

  constructor(
    private readonly base: Disk,
    readonly overlay: Overlay | null,
    /** The base's holes (from its manifest); without one, all of it is data. */
    allocation?: AllocationMap,
  ) {
    this.size = base.virtualSize;
    this.allocation = allocation ?? AllocationMap.allData(this.size);
  }

  /**
   * Data and holes from `offset` (at most `maxRuns` runs, covering the range
   * or a prefix of it): the base's holes, less the overlay's written blocks,
   * which are data whatever they hold.
   */
  map(offset: number, length: number, maxRuns: number): Run[] {
    this.checkRange(offset, length);
    const ov = this.overlay;
    if (!ov || ov.writtenBlocks === 0) return this.allocation.map(offset, length, maxRuns);
    const out: Run[] = [];
    const push = (r: Run) => {
      const last = out[out.length - 1];
      if (last && last.data === r.data) last.length += r.length;
      else out.push({ ...r });
    };
    // The base's runs a batch at a time: written blocks can merge a hole into its neighbours, so
    // maxRuns of the base's runs may cover less than maxRuns runs of ours (then ask for more).
    const end = offset + length;
    for (let from = offset; from < end && out.length <= maxRuns; ) {
      const base = this.allocation.map(from, end - from, maxRuns + 1);
      if (!base.length) break;
      for (const r of base) {
        if (r.data) push(r);
        else {
          // a hole's written blocks are data
          const rEnd = r.offset + r.length;
          for (let at = r.offset; at < rEnd; ) {
            const b = Math.floor(at / OVERLAY_BLOCK);
            const written = ov.has(b);
            const next = Math.min(rEnd, ov.find(b + 1, Math.ceil(rEnd / OVERLAY_BLOCK), !written) * OVERLAY_BLOCK);
            push({ offset: at, length: next - at, data: written });
            at = next;
            if (out.length > maxRuns) break;
          }
        }
        if (out.length > maxRuns) break;
      }
      const last = base[base.length - 1]!;
      if (last.offset + last.length <= from) break; // no progress: never loop
      from = last.offset + last.length;
    }
    if (out.length > maxRuns) out.length = maxRuns;
    return out;
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

  /**
   * The bytes of [offset, offset+length) as pieces to send one after another:
   * views of the base's decoded chunks when nothing of the overlay is in the
   * range and the base can give them (no copy, no buffer of the whole
   * length); else one buffer from read(). Not to be written to.
   */
  async readPieces(offset: number, length: number): Promise<Uint8Array[]> {
    this.checkRange(offset, length);
    const pieces = (this.base as Partial<PieceReader>).readPieces;
    if (!pieces || this.touchesOverlay(offset, length)) return [await this.read(offset, length)];
    this.onBaseRead?.(offset, length);
    return pieces.call(this.base, offset, length);
  }

  /**
   * readPieces() for a caller that says when it is done with the pieces
   * (`release`, once the socket took them): a base that reuses its buffers
   * (SlabDisk) lends them until then, without a copy.
   */
  async readLeased(offset: number, length: number): Promise<Lease> {
    this.checkRange(offset, length);
    const leased = (this.base as Partial<LeaseReader>).readLeased;
    if (!leased || this.touchesOverlay(offset, length)) return { pieces: await this.readPieces(offset, length), release: noRelease };
    this.onBaseRead?.(offset, length);
    return leased.call(this.base, offset, length);
  }

  private touchesOverlay(offset: number, length: number): boolean {
    const ov = this.overlay;
    return ov !== null && ov.writtenBlocks > 0 && ov.find(Math.floor(offset / OVERLAY_BLOCK), Math.ceil((offset + length) / OVERLAY_BLOCK), true) * OVERLAY_BLOCK < offset + length;
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
