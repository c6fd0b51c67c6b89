/** An in-memory Disk over a byte buffer: fuzz cases mutate copies; a package member is chunked like a file. */
import type { Disk, Extent } from './disk.js';
import { VmdnError } from '../errors.js';

export class MemDisk implements Disk {
  readonly format = 'mem';
  readonly clusterSize = 4096;
  readonly virtualSize: number;
  constructor(readonly bytes: Uint8Array) {
    this.virtualSize = bytes.length;
  }
  async *extents(): AsyncIterable<Extent> {
    if (this.virtualSize) yield { offset: 0, length: this.virtualSize, kind: 'data' };
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) throw new VmdnError('E_USAGE', `read past end: ${offset}+${length}`);
    return this.bytes.slice(offset, offset + length);
  }
  async close(): Promise<void> {}
}
