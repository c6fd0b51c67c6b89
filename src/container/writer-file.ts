/**
 * Shared plumbing for the disk writers: a temp file beside the destination
 * that is either committed (fsync + atomic rename) or removed, plus argument
 * checks. Writing into a temp file means a crash or abort never leaves a
 * half-written image under the final name.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { VmdnError, asVmdnError } from '../errors.js';
import { isProcessAlive } from '../util/process.js';

export class TempFile {
  private closed = false;
  private constructor(
    readonly fh: fs.FileHandle,
    readonly tmpPath: string,
    readonly outPath: string,
  ) {}

  /**
   * Create `${outPath}.tmp-<pid>-<random>` exclusively (never clobbers another writer's temp).
   * Temp files of the same output left by processes that no longer run (killed
   * exports and pulls, possibly gigabytes) are removed first.
   */
  static async create(outPath: string): Promise<TempFile> {
    await removeStaleTemps(outPath);
    const tmpPath = `${outPath}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
    try {
      const fh = await fs.open(tmpPath, 'wx');
      return new TempFile(fh, tmpPath, outPath);
    } catch (err) {
      throw asVmdnError(err);
    }
  }

  /** Write all of `buf[off, off+len)` at file position `pos` (FileHandle.write may be short). */
  async writeAt(buf: Uint8Array, off: number, len: number, pos: number): Promise<void> {
    while (len > 0) {
      const { bytesWritten } = await this.fh.write(buf, off, len, pos);
      if (bytesWritten <= 0) throw new VmdnError('E_IO', `${this.tmpPath}: short write`, { path: this.tmpPath });
      off += bytesWritten;
      len -= bytesWritten;
      pos += bytesWritten;
    }
  }

  /** Make the content durable, then atomically move it to outPath and persist the rename. */
  async commit(): Promise<void> {
    await this.fh.sync();
    await this.fh.close();
    this.closed = true;
    await fs.rename(this.tmpPath, this.outPath);
    // The rename itself is only durable once the directory is synced.
    let dir: fs.FileHandle | undefined;
    try {
      dir = await fs.open(path.dirname(this.outPath), 'r');
      await dir.sync();
    } catch {
      /* some filesystems refuse fsync on directories; the data is already safe */
    } finally {
      await dir?.close();
    }
  }

  /** Close (if needed) and delete the temp file; safe to call more than once. */
  async discard(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.fh.close().catch(() => undefined);
    }
    await fs.rm(this.tmpPath, { force: true });
  }
}

/** Remove `${outPath}.tmp-<pid>-<hex>` files whose pid is not a running process. Best effort. */
export async function removeStaleTemps(outPath: string): Promise<number> {
  const dir = path.dirname(outPath);
  const prefix = `${path.basename(outPath)}.tmp-`;
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return 0; // the create that follows reports the real problem
  }
  let n = 0;
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)-[0-9a-f]+$/.exec(name.slice(prefix.length));
    if (!m || Number(m[1]) === process.pid || isProcessAlive(Number(m[1]))) continue;
    await fs.rm(path.join(dir, name), { force: true }).then(() => n++, () => undefined);
  }
  return n;
}


export function checkVirtualSize(virtualSize: number, max: number): void {
  if (!Number.isSafeInteger(virtualSize) || virtualSize < 0 || virtualSize > max) {
    throw new VmdnError('E_USAGE', `invalid virtual size ${virtualSize}`, { virtualSize, max });
  }
}

/**
 * Enforce the writer contract: ascending, non-overlapping writes inside the
 * disk. Returns the new high-water mark. Overlaps count as out of order since
 * the writers rely on never revisiting bytes (holes stay holes).
 */
export function checkWrite(offset: number, length: number, writtenEnd: number, virtualSize: number): number {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new VmdnError('E_USAGE', `invalid write offset ${offset}`, { offset });
  }
  if (offset < writtenEnd) {
    throw new VmdnError('E_USAGE', `write out of order: offset ${offset} < previous end ${writtenEnd}`, { offset, writtenEnd });
  }
  if (offset + length > virtualSize) {
    throw new VmdnError('E_USAGE', `write past end of disk: ${offset}+${length} > ${virtualSize}`, { offset, length, virtualSize });
  }
  return offset + length;
}

/** True if `buf[start, end)` is all zero bytes. Uses native memcmp against a shared zero page. */
const ZERO = Buffer.alloc(1 << 16);
export function isZero(buf: Buffer, start: number, end: number): boolean {
  while (start < end) {
    const n = Math.min(end - start, ZERO.length);
    if (buf.compare(ZERO, 0, n, start, start + n) !== 0) return false;
    start += n;
  }
  return true;
}

const SPARSE_BLOCK = 4096;

/**
 * Write `buf[0, len)` at file position `start` through `writeAt`, leaving
 * all-zero 4 KiB blocks of the file (clipped to the range) unwritten, so a
 * file that starts empty stays sparse. Shared by the raw writer and the
 * codec workers' direct export path.
 */
export async function writeSkippingZeroBlocks(
  writeAt: (buf: Buffer, off: number, len: number, pos: number) => Promise<void>,
  buf: Buffer,
  len: number,
  start: number,
): Promise<void> {
  let runStart = -1;
  let i = 0;
  while (i < len) {
    const blockEnd = Math.min(len, (Math.floor((start + i) / SPARSE_BLOCK) + 1) * SPARSE_BLOCK - start);
    const zero = isZero(buf, i, blockEnd);
    if (!zero && runStart < 0) runStart = i;
    if (zero && runStart >= 0) {
      await writeAt(buf, runStart, i - runStart, start + runStart);
      runStart = -1;
    }
    i = blockEnd;
  }
  if (runStart >= 0) await writeAt(buf, runStart, len - runStart, start + runStart);
}

/** View any Uint8Array as a Buffer without copying. */
export function asBuffer(a: Uint8Array): Buffer {
  return Buffer.isBuffer(a) ? a : Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * A contiguous run of output bytes gathered in memory before being handed to
 * `sink` in one go. Two buffers alternate: flush() starts writing the full one
 * and returns as soon as the *previous* write has completed, so producing the
 * next batch overlaps with the kernel taking the last one.
 */
export class Batcher {
  private readonly bufs: [Buffer, Buffer];
  private cur = 0;
  /** File offset of buf[0]; bytes gathered so far. Callers fill buf[len..] and bump len. */
  start: number;
  len = 0;
  private inflight: Promise<void> | null = null;

  constructor(
    readonly size: number,
    start: number,
    private readonly sink: (buf: Buffer, len: number, start: number) => Promise<void>,
  ) {
    this.bufs = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)];
    this.start = start;
  }

  get buf(): Buffer {
    return this.bufs[this.cur];
  }

  /** File offset just past the gathered bytes. */
  get end(): number {
    return this.start + this.len;
  }

  /** Make sure `n` more bytes fit in the current buffer, flushing if not. */
  async reserve(n: number): Promise<void> {
    if (n > this.size) throw new VmdnError('E_INTERNAL', `batch reservation ${n} exceeds ${this.size}`);
    if (this.len + n > this.size) await this.flush();
  }

  async flush(): Promise<void> {
    await this.wait();
    if (this.len === 0) return;
    const p = this.sink(this.bufs[this.cur], this.len, this.start);
    p.catch(() => undefined); // surfaced by the next flush/drain; avoids an unhandled rejection meanwhile
    this.inflight = p;
    this.cur ^= 1;
    this.start += this.len;
    this.len = 0;
  }

  /** Flush and wait until everything gathered is written. */
  async drain(): Promise<void> {
    await this.flush();
    await this.wait();
  }

  private async wait(): Promise<void> {
    const p = this.inflight;
    this.inflight = null;
    if (p) await p;
  }

  /** Wait for any write in progress, ignoring its outcome (for abort). */
  async settle(): Promise<void> {
    await this.wait().catch(() => undefined);
  }
}
