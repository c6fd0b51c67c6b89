/**
 * Raw image writer. Sequential writes are gathered into large batches and
 * written with positioned writes; all-zero 4 KiB blocks are skipped so the
 * output stays sparse (the file starts empty and no byte is written twice,
 * so skipping zeros never leaves stale data behind).
 */
import type { DiskWriter } from './disk.js';
import { VmdnError } from '../errors.js';
import { WriterLife } from './writer-life.js';
import { Batcher, TempFile, asBuffer, checkVirtualSize, checkWrite, writeSkippingZeroBlocks } from './writer-file.js';

const BATCH = 8 << 20;
/** Raw files have no format limit of their own; stay within exact JS integers. */
const MAX_RAW_SIZE = Number.MAX_SAFE_INTEGER;

/**
 * Bytes after the disk data: a format whose metadata is a trailer (fixed VHD's
 * footer) is a raw file padded to `at` (zeros, a hole) with `bytes` there.
 */
export interface RawTrailer {
  readonly at: number;
  readonly bytes: Uint8Array;
}

export async function createRawWriter(outPath: string, virtualSize: number, trailer?: RawTrailer): Promise<DiskWriter> {
  checkVirtualSize(virtualSize, MAX_RAW_SIZE);
  if (trailer && !(trailer.at >= virtualSize)) throw new VmdnError('E_INTERNAL', `trailer at ${trailer.at} inside the disk (${virtualSize})`);
  return new RawWriter(await TempFile.create(outPath), virtualSize, trailer);
}

class RawWriter implements DiskWriter {
  private readonly out: Batcher;
  private writtenEnd = 0;
  private readonly life: WriterLife;
  /** The background fdatasync of syncAhead(), and the first error one met (a failed fsync reports its error once only). */
  private ahead: Promise<void> | undefined;
  private aheadError: unknown;

  constructor(
    private readonly file: TempFile,
    private readonly virtualSize: number,
    private readonly trailer?: RawTrailer,
  ) {
    this.life = new WriterLife(file);
    this.out = new Batcher(BATCH, 0, (buf, len, start) => this.writeNonZero(buf, len, start));
  }

  get directTarget(): string {
    return this.file.tmpPath;
  }

  /**
   * One fdatasync at a time, on libuv's thread pool: the disk writes back what
   * the workers have written while they decode the rest. A call while one runs
   * does nothing; the next one after it takes up what came meanwhile.
   */
  syncAhead(): void {
    if (this.ahead) return;
    this.ahead = this.file.fh.datasync().then(
      () => {
        this.ahead = undefined;
      },
      (err: unknown) => {
        this.ahead = undefined;
        this.aheadError ??= err;
      },
    );
  }

  private async settleAhead(): Promise<void> {
    await this.ahead;
    if (this.aheadError !== undefined) throw this.aheadError;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    // Writes share the batch buffer: they must not interleave.
    this.life.checkWritable();
    this.writtenEnd = checkWrite(offset, data.length, this.writtenEnd, this.virtualSize);
    if (data.length === 0) return;
    await this.life.writing(async () => {
      await this.gather(offset, asBuffer(data));
    });
  }

  private async gather(offset: number, src: Buffer): Promise<void> {
    const out = this.out;
    // A gap ends the batch: its bytes must stay a hole, not be copied as zeros.
    if (out.len > 0 && offset !== out.end) await out.flush();
    if (out.len === 0) out.start = offset;
    let done = 0;
    while (done < src.length) {
      const n = Math.min(src.length - done, out.size - out.len);
      src.copy(out.buf, out.len, done, done + n);
      out.len += n;
      done += n;
      if (out.len === out.size) await out.flush();
    }
  }

  /** Write `buf[0, len)` at `start`, skipping zero blocks (4 KiB blocks of the file, clipped to the batch). */
  private writeNonZero(buf: Buffer, len: number, start: number): Promise<void> {
    return writeSkippingZeroBlocks((b, off, n, pos) => this.file.writeAt(b, off, n, pos), buf, len, start);
  }

  async finish(): Promise<void> {
    await this.life.finish(async () => {
      await this.settleAhead();
      await this.out.drain();
      const t = this.trailer;
      await this.file.fh.truncate(t ? t.at : this.virtualSize);
      if (t) await this.file.writeAt(t.bytes, 0, t.bytes.length, t.at);
    });
  }

  async abort(): Promise<void> {
    await this.life.abort(async () => {
      await this.ahead;
      await this.out.settle();
    });
  }
}
