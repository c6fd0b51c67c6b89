/**
 * Reads of many packed objects' stored bytes for a server to send: adjacent
 * entries of one pack (an import writes in disk order, and a pull asks in
 * that order) come with one pread into one buffer, each object a view of it,
 * instead of an index lookup, a read and a buffer per object. Nothing is
 * decoded: the receiver verifies.
 */
import { preadInto } from './pack-reader.js';
import { ENTRY_HEADER } from './pack-file.js';

/** A packed object's frame: `offset` and `length` in the pack file `path`. */
export interface PackedFrame {
  digest: string;
  path: string;
  offset: number;
  length: number;
}

/** Longest stretch read at once: a batch's write group (batch.ts). */
const STRETCH_MAX = 1 << 20;

/**
 * Each frame's bytes, or the error its read met (E_NOT_FOUND: the pack went
 * away, repacked by gc; E_CORRUPT_OBJECT: it ends early). A stretch that fails
 * is read again object by object, so an error names the object it is about.
 */
export function readStretches(frames: PackedFrame[], source: string): Array<Uint8Array | Error> {
  const out: Array<Uint8Array | Error> = [];
  for (let i = 0; i < frames.length; ) {
    const first = frames[i]!;
    let end = first.offset + first.length;
    let j = i + 1;
    for (; j < frames.length; j++) {
      const f = frames[j]!;
      if (f.path !== first.path || f.offset !== end + ENTRY_HEADER || f.offset + f.length - first.offset > STRETCH_MAX) break;
      end = f.offset + f.length;
    }
    try {
      const buf = Buffer.allocUnsafeSlow(end - first.offset);
      preadInto(first.path, first.offset, buf.length, buf, 0, first.digest, source);
      for (let k = i; k < j; k++) out.push(buf.subarray(frames[k]!.offset - first.offset, frames[k]!.offset - first.offset + frames[k]!.length));
    } catch (err) {
      if (j - i === 1) out.push(err as Error);
      else for (let k = i; k < j; k++) out.push(...readStretches([frames[k]!], source));
    }
    i = j;
  }
  return out;
}
