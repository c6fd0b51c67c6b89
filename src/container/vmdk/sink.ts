/**
 * Where the streamOptimized writer puts its bytes: appended, never sought
 * back to. A file output is a temp file renamed into place at the end (as for
 * every writer); a stream output (stdout, `-`) is written as it comes, with
 * backpressure, so an export can feed a pipe without any temporary file.
 */
import type { Writable } from 'node:stream';
import { VmdnError, asVmdnError } from '../../errors.js';
import { drained } from '../../util/drain.js';
import { TempFile } from '../writer-file.js';

export interface SeqSink {
  /** Bytes written so far. */
  readonly pos: number;
  write(b: Uint8Array): Promise<void>;
  commit(): Promise<void>;
  discard(): Promise<void>;
}

const BATCH = 8 << 20;

export async function fileSink(outPath: string): Promise<SeqSink> {
  const file = await TempFile.create(outPath);
  const buf = Buffer.allocUnsafe(BATCH);
  let len = 0;
  let flushed = 0;
  const flush = async (): Promise<void> => {
    if (len === 0) return;
    await file.writeAt(buf, 0, len, flushed);
    flushed += len;
    len = 0;
  };
  return {
    get pos() {
      return flushed + len;
    },
    async write(b) {
      let i = 0;
      while (i < b.length) {
        const n = Math.min(b.length - i, BATCH - len);
        buf.set(b.subarray(i, i + n), len);
        len += n;
        i += n;
        if (len === BATCH) await flush();
      }
    },
    async commit() {
      await flush();
      await file.commit();
    },
    discard: () => file.discard(),
  };
}

export function streamSink(w: Writable, name: string): SeqSink {
  let pos = 0;
  let failed: Error | null = null;
  const onError = (err: Error): void => {
    failed ??= err;
  };
  w.on('error', onError);
  const check = (): void => {
    if (failed) throw new VmdnError('E_IO', `${name}: ${failed.message}`, { errno: (failed as NodeJS.ErrnoException).code }, { cause: failed });
    if (w.destroyed) throw new VmdnError('E_IO', `${name}: the output was closed`);
  };
  return {
    get pos() {
      return pos;
    },
    async write(b) {
      check();
      pos += b.length;
      // The stream keeps the buffer until written: callers reuse theirs, so hand it a copy.
      if (!w.write(Buffer.from(b))) await drained(w);
      check();
    },
    async commit() {
      check();
      // Everything handed over has reached the kernel once this callback runs.
      await new Promise<void>((resolve, reject) => w.write(Buffer.alloc(0), (err) => (err ? reject(asVmdnError(err)) : resolve())));
      w.off('error', onError);
    },
    async discard() {
      w.off('error', onError);
    },
  };
}
