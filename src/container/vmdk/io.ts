/** Small helpers of the VMDK reader: exact positioned reads and merging adjacent extents. */
import type fs from 'node:fs/promises';
import type { Extent } from '../disk.js';
import { VmdnError } from '../../errors.js';

/** Read exactly `length` bytes at `pos`; the file ending first is a truncated image. */
export async function readExact(fh: fs.FileHandle, path: string, pos: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, pos + done);
    if (bytesRead === 0) throw new VmdnError('E_TRUNCATED', `${path}: file ends at ${pos + done}, needed ${length} bytes at ${pos}`, { path });
    done += bytesRead;
  }
  return buf;
}

/** Merges adjacent extents of one kind; finished ones accumulate in `done`. */
export class ExtentMerger {
  readonly done: Extent[] = [];
  private cur: { offset: number; length: number; kind: Extent['kind'] } | null = null;
  add(offset: number, length: number, kind: Extent['kind']): void {
    if (length <= 0) return;
    const c = this.cur;
    if (c && c.kind === kind && c.offset + c.length === offset) {
      c.length += length;
      return;
    }
    this.finish();
    this.cur = { offset, length, kind };
  }
  finish(): void {
    if (this.cur) this.done.push(this.cur);
    this.cur = null;
  }
}
