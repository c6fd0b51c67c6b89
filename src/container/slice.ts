/** A window onto part of a disk (a partition) that is itself a Disk. */
import type { Disk, Extent } from './disk.js';
import { VmdnError } from '../errors.js';

export class DiskSlice implements Disk {
  readonly format: string;
  readonly clusterSize: number;
  constructor(
    private readonly parent: Disk,
    readonly start: number,
    readonly virtualSize: number,
  ) {
    if (start < 0 || virtualSize < 0 || start + virtualSize > parent.virtualSize) {
      throw new VmdnError('E_FORMAT', `partition [${start}, +${virtualSize}) lies outside the ${parent.virtualSize}-byte disk`, { start, length: virtualSize });
    }
    this.format = `${parent.format}-slice`;
    this.clusterSize = parent.clusterSize;
  }

  async *extents(signal?: AbortSignal): AsyncIterable<Extent> {
    const end = this.start + this.virtualSize;
    for await (const e of this.parent.extents(signal)) {
      const s = Math.max(e.offset, this.start);
      const t = Math.min(e.offset + e.length, end);
      if (t > s) yield { offset: s - this.start, length: t - s, kind: e.kind };
      if (e.offset >= end) break;
    }
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      return Promise.reject(new VmdnError('E_FORMAT', `read past end of partition: ${offset}+${length} > ${this.virtualSize}`));
    }
    return this.parent.read(this.start + offset, length);
  }

  /** Slices do not own their parent. */
  async close(): Promise<void> {}
}
