/**
 * Writing an image to a stream that cannot seek (stdout into a pipe). Only
 * formats whose bytes can be produced in order qualify: raw, and fixed VHD
 * (raw, then the footer). Gaps between writes are sent as zeros.
 */
import type { Writable } from 'node:stream';
import type { DiskWriter } from './disk.js';
import type { RawTrailer } from './raw-writer.js';
import { VmdnError } from '../errors.js';
import { checkVirtualSize, checkWrite } from './writer-file.js';
import { drained } from '../util/drain.js';

const ZEROS = new Uint8Array(1 << 20);

export function createStreamWriter(out: Writable, virtualSize: number, trailer?: RawTrailer): DiskWriter {
  checkVirtualSize(virtualSize, Number.MAX_SAFE_INTEGER);
  let pos = 0;
  let failed: Error | null = null;
  const onError = (err: Error): void => void (failed ??= err);
  out.on('error', onError);

  /** A reader that went away (EPIPE) or any stream error fails the export as I/O. */
  function checkStream(): void {
    const e = failed as NodeJS.ErrnoException | null;
    if (e) throw new VmdnError('E_IO', `output stream: ${e.message}`, { errno: e.code }, { cause: e });
  }
  async function send(b: Uint8Array): Promise<void> {
    checkStream();
    // drained() removes its listeners: a once() per full buffer would pile them up on a long stream
    if (!out.write(b)) await drained(out);
    checkStream();
  }
  async function zerosTo(end: number): Promise<void> {
    while (pos < end) {
      const n = Math.min(ZEROS.length, end - pos);
      await send(ZEROS.subarray(0, n));
      pos += n;
    }
  }
  let state: 'open' | 'done' | 'aborted' = 'open';
  return {
    async write(offset, data) {
      if (state !== 'open') throw new VmdnError('E_USAGE', `write after ${state}`);
      checkWrite(offset, data.length, pos, virtualSize);
      await zerosTo(offset);
      await send(Uint8Array.prototype.slice.call(data)); // the stream may hold it after write() returns; callers reuse buffers
      pos += data.length;
    },
    async finish() {
      if (state !== 'open') throw new VmdnError('E_USAGE', `finish after ${state}`);
      state = 'done';
      await zerosTo(trailer ? trailer.at : virtualSize);
      if (trailer) await send(trailer.bytes);
      out.off('error', onError);
    },
    async abort() {
      state = 'aborted';
      out.off('error', onError);
    },
  };
}
