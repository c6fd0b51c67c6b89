/** Raw disk images: the file is the disk. Sparse regions are reported as holes. */
import fs from 'node:fs/promises';
import type { Disk, Extent } from './disk.js';
import { dataRanges } from './sparse.js';
import { VmdnError } from '../errors.js';
import { openImageFile } from './image-file.js';

export const RAW_BLOCK = 4096;

export class RawDisk implements Disk {
  readonly format = 'raw';
  readonly clusterSize = RAW_BLOCK;
  private constructor(
    private readonly fh: fs.FileHandle,
    readonly virtualSize: number,
    readonly path: string,
  ) {}

  static async open(file: string): Promise<RawDisk> {
    const { fh, size } = await openImageFile(file);
    return new RawDisk(fh, size, file);
  }

  async *extents(signal?: AbortSignal): AsyncIterable<Extent> {
    for (const [start, end] of dataRanges(this.fh.fd, this.virtualSize)) {
      signal?.throwIfAborted();
      // SEEK_DATA granularity is the filesystem block; round out to our block.
      const s = Math.floor(start / RAW_BLOCK) * RAW_BLOCK;
      const e = Math.min(this.virtualSize, Math.ceil(end / RAW_BLOCK) * RAW_BLOCK);
      yield { offset: s, length: e - s, kind: 'data' };
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new VmdnError('E_USAGE', `read past end of disk: ${offset}+${length} > ${this.virtualSize}`);
    }
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) throw new VmdnError('E_TRUNCATED', `${this.path}: file shrank while reading`, { path: this.path });
      done += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
