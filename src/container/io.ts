/** Positioned-read, bounds and extent helpers shared by the container readers. */
import type fs from 'node:fs/promises';
import type { Extent } from './disk.js';
import { VmdnError } from '../errors.js';

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

/** Read up to `length` bytes at `pos` (fewer at EOF). */
export async function readUpTo(fh: fs.FileHandle, pos: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, pos + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf.subarray(0, done);
}

/** A Disk.read() of [offset, offset+length) must lie inside the disk: anything else is a caller's bug. */
export function checkRead(offset: number, length: number, virtualSize: number, path: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > virtualSize) {
    throw new VmdnError('E_USAGE', `read past end of disk: ${offset}+${length} > ${virtualSize}`, { path });
  }
}
