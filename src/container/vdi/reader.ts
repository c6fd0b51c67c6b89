/** VDI reader: static and dynamic VirtualBox images (version 1.1, no differencing). */
import type fs from 'node:fs/promises';
import type { Disk, Extent } from '../disk.js';
import { checkRead } from '../io.js';
import { openImageFile } from '../image-file.js';
import { readExact } from '../qcow2/tables.js';
import { HEADER_BYTES } from './layout.js';
import { parseVdiHeader, parseBlockMap, type VdiInfo } from './header.js';

export class VdiDisk implements Disk {
  readonly format = 'vdi';
  readonly virtualSize: number;
  readonly clusterSize: number;

  private constructor(
    private readonly fh: fs.FileHandle,
    readonly path: string,
    readonly info: VdiInfo,
    /** Block index -> file offset, -1 where the block reads as zeros. */
    private readonly map: Float64Array,
  ) {
    this.virtualSize = info.virtualSize;
    this.clusterSize = info.blockSize;
  }

  static async open(path: string): Promise<VdiDisk> {
    const { fh, size } = await openImageFile(path);
    try {
      const head = await readExact(fh, path, 0, Math.min(size, HEADER_BYTES));
      const info = parseVdiHeader(head, path, size);
      const used = Math.ceil(info.virtualSize / info.blockSize);
      const map = parseBlockMap(await readExact(fh, path, info.offsetBmap, used * 4), info, path, size);
      return new VdiDisk(fh, path, info, map);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async *extents(signal?: AbortSignal): AsyncIterable<Extent> {
    const bs = this.info.blockSize;
    let cur: { offset: number; length: number } | null = null;
    for (let b = 0; b < this.map.length; b++) {
      signal?.throwIfAborted();
      if (this.map[b] < 0) continue;
      const start = b * bs;
      const len = Math.min(this.virtualSize, start + bs) - start;
      if (cur && cur.offset + cur.length === start) cur.length += len;
      else {
        if (cur) yield { ...cur, kind: 'data' };
        cur = { offset: start, length: len };
      }
    }
    if (cur) yield { ...cur, kind: 'data' };
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRead(offset, length, this.virtualSize, this.path);
    const out = Buffer.alloc(length);
    const bs = this.info.blockSize;
    let pos = offset;
    while (pos < offset + length) {
      const b = Math.floor(pos / bs);
      const inBlock = pos - b * bs;
      const n = Math.min(bs - inBlock, offset + length - pos);
      if (this.map[b] >= 0) (await readExact(this.fh, this.path, this.map[b] + inBlock, n)).copy(out, pos - offset);
      pos += n;
    }
    return out;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
