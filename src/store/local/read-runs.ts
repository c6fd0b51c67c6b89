/**
 * Worker side of LocalStore.copyRuns: read, decode, verify and write many
 * objects per message. Measured on the corpus image (14,671 objects of ~32 KiB),
 * per-object costs dominated an export: a message each way (the workers spent
 * more CPU in postMessage than in zstd), a fresh buffer for every file read and
 * every decoded object, and a pwrite per object. Here the encoded bytes go into
 * one reused scratch buffer, objects that follow each other on the disk are
 * decoded side by side into one run buffer, and each run is written with one
 * pwrite per non-zero stretch.
 *
 * Synchronous I/O, as in codec-worker.ts: this thread has nothing else to do.
 */
import fsSync from 'node:fs';
import { decodeObjectInto, maxEncodedSize, singleFrameSize, MAX_OBJECT_SIZE } from '../codec.js';
import { VmdnError } from '../../errors.js';
import { isZero } from '../../container/writer-file.js';
import { preadInto } from './pack-reader.js';
import { ENTRY_HEADER } from './pack-file.js';

const SPARSE_BLOCK = 4096;

/** An object's encoded bytes: the whole loose file `objPath`, or (with `packOffset`) `storedSize` bytes of the pack `objPath`. */
export interface Placed {
  digest: string;
  objPath: string;
  packOffset?: number;
  storedSize?: number;
}

export interface RunItem extends Placed {
  /** Where the object's data goes in the output file. */
  offset: number;
  /** Its size by the manifest: an object of any other size is refused before a byte of it is written. */
  length: number;
  /** Other places of the same data (a repeated chunk: decoded and verified once, written at each). */
  copies?: number[];
}

const MAX_ENCODED = maxEncodedSize(MAX_OBJECT_SIZE);
/** A growable scratch buffer (reused across calls on this thread). */
interface Scratch {
  buf: Buffer;
}
const single: Scratch = { buf: Buffer.allocUnsafe(256 << 10) };
/** readMany's encoded objects, side by side. */
const many: Scratch = { buf: Buffer.allocUnsafe(1 << 20) };
let run = Buffer.allocUnsafe(2 << 20);

/** Read the whole object file into `s.buf` at `at` (grown as needed, what is before `at` kept); returns its length. */
function readFileInto(s: Scratch, at: number, objPath: string, digest: string, source: string): number {
  let fd: number;
  try {
    fd = fsSync.openSync(objPath, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new VmdnError('E_NOT_FOUND', `object ${digest} not in store ${source}`, { digest });
    throw err;
  }
  try {
    let n = 0;
    for (;;) {
      if (n > MAX_ENCODED) throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} from ${source}: file larger than any object`, { digest, source });
      if (at + n === s.buf.length) {
        const bigger = Buffer.allocUnsafe(Math.max(at + n + 1, Math.min(at + MAX_ENCODED + 1, s.buf.length * 2)));
        s.buf.copy(bigger, 0, 0, at + n);
        s.buf = bigger;
      }
      const r = fsSync.readSync(fd, s.buf, at + n, Math.min(s.buf.length - at - n, MAX_ENCODED + 1 - n), n);
      if (r === 0) return n;
      n += r;
    }
  } finally {
    fsSync.closeSync(fd);
  }
}

/** The whole object file in the scratch buffer (a view valid until the next call). */
export function readObjectFile(objPath: string, digest: string, source: string): Buffer {
  const n = readFileInto(single, 0, objPath, digest, source); // before reading single.buf: it may grow
  return single.buf.subarray(0, n);
}

/** Longest stretch of a pack read at once for adjacent entries. */
const WINDOW_MAX = 4 << 20;
/** The last stretch of a pack read (packs are append-only: bytes at an offset never change). */
const win = { path: '', start: 0, end: 0, buf: Buffer.allocUnsafe(WINDOW_MAX) };

/**
 * The encoded bytes of `items[i]` (a view valid until the next call). A packed
 * object is read with the entries after it that follow it in the same pack (an
 * import writes in disk order, so an export's or NBD read's objects mostly do):
 * one pread for many objects instead of an open/read/close each.
 */
export function readPlaced(items: readonly Placed[], i: number, source: string): Buffer {
  const it = items[i]!;
  if (it.packOffset === undefined) return readObjectFile(it.objPath, it.digest, source);
  // a window serves the later items of the call that read it, never another call (a test
  // damages a pack in place between calls; a stale copy would hide that)
  if (i === 0) win.path = '';
  const len = it.storedSize!;
  if (!(Number.isSafeInteger(len) && len > 0 && len <= MAX_ENCODED)) throw new VmdnError('E_CORRUPT_OBJECT', `object ${it.digest.slice(0, 12)} from ${source}: bad stored size ${len}`, { digest: it.digest, source });
  if (!(win.path === it.objPath && it.packOffset >= win.start && it.packOffset + len <= win.end)) {
    let end = it.packOffset + len;
    for (let j = i + 1; j < items.length; j++) {
      const n = items[j]!;
      if (n.objPath !== it.objPath || n.packOffset !== end + ENTRY_HEADER || end + ENTRY_HEADER + n.storedSize! - it.packOffset > WINDOW_MAX) break;
      end = n.packOffset + n.storedSize!;
    }
    if (end - it.packOffset > win.buf.length) win.buf = Buffer.allocUnsafe(end - it.packOffset);
    win.path = '';
    try {
      preadInto(it.objPath, it.packOffset, end - it.packOffset, win.buf, 0, it.digest, source);
    } catch (err) {
      // a short stretch (truncated pack): read this object alone, so the error names the right one
      if (end === it.packOffset + len) throw err;
      end = it.packOffset + len;
      preadInto(it.objPath, it.packOffset, len, win.buf, 0, it.digest, source);
    }
    Object.assign(win, { path: it.objPath, start: it.packOffset, end });
  }
  return win.buf.subarray(it.packOffset - win.start, it.packOffset - win.start + len);
}

/** readPlaced into `s.buf` at `at` (grown as needed, what is before `at` kept); returns its length. */
function readPlacedInto(s: Scratch, at: number, items: readonly Placed[], i: number, source: string): number {
  const it = items[i]!;
  if (it.packOffset === undefined) return readFileInto(s, at, it.objPath, it.digest, source);
  const bytes = readPlaced(items, i, source);
  if (at + bytes.length > s.buf.length) {
    const bigger = Buffer.allocUnsafe(Math.max(at + bytes.length, s.buf.length * 2));
    s.buf.copy(bigger, 0, 0, at);
    s.buf = bigger;
  }
  bytes.copy(s.buf, at);
  return bytes.length;
}

/** Write `items` (each verified before any of its bytes is written) into `fd`; returns the bytes placed. */
export function copyRuns(fd: number, items: RunItem[], source: string): number {
  let start = 0;
  let len = 0;
  let total = 0;
  // repeated objects' other places, as (place in the run buffer, output offset, length): written from the run before it is reused
  const again: number[] = [];
  const flush = () => {
    if (len > 0) writeSparseSync(fd, run, len, start);
    for (let k = 0; k < again.length; k += 3) writeSparseSync(fd, run.subarray(again[k]!), again[k + 2]!, again[k + 1]!);
    again.length = 0;
    len = 0;
  };
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    if (!(Number.isSafeInteger(it.length) && it.length >= 0 && it.length <= MAX_OBJECT_SIZE)) {
      throw new VmdnError('E_INTERNAL', `bad object length ${it.length}`, { digest: it.digest });
    }
    // a gap (a hole or a filesystem between chunks) or a full buffer ends the run
    if (len > 0 && (it.offset !== start + len || len + it.length > run.length)) flush();
    if (len === 0) start = it.offset;
    if (it.length > run.length) run = Buffer.allocUnsafe(it.length);
    const encoded = readPlaced(items, i, source);
    decodeObjectInto(it.digest, encoded, run.subarray(len, len + it.length), source);
    for (const to of it.copies ?? []) {
      again.push(len, to, it.length);
      total += it.length;
    }
    len += it.length;
    total += it.length;
  }
  flush();
  return total;
}

/** writeSkippingZeroBlocks' rule (all-zero 4 KiB blocks of the file stay holes), synchronously: the run buffer is reused right after. */
export function writeSparseSync(fd: number, buf: Buffer, len: number, start: number): void {
  let runStart = -1;
  for (let i = 0; i < len; ) {
    const blockEnd = Math.min(len, (Math.floor((start + i) / SPARSE_BLOCK) + 1) * SPARSE_BLOCK - start);
    const zero = isZero(buf, i, blockEnd);
    if (!zero && runStart < 0) runStart = i;
    if (zero && runStart >= 0) {
      writeAll(fd, buf, runStart, i - runStart, start + runStart);
      runStart = -1;
    }
    i = blockEnd;
  }
  if (runStart >= 0) writeAll(fd, buf, runStart, len - runStart, start + runStart);
}

function writeAll(fd: number, buf: Buffer, off: number, n: number, pos: number): void {
  while (n > 0) {
    const w = fsSync.writeSync(fd, buf, off, n, pos);
    if (w <= 0) throw new VmdnError('E_IO', 'short write', { pos });
    off += w;
    n -= w;
    pos += w;
  }
}

/** One object's place in a getMany answer's buffer, or why it was refused. */
export type ManyOutcome = { at: number; size: number } | { error: { code: string; message: string; data: Record<string, unknown> } };

/**
 * Decode and verify each object into one buffer of their own (moved to the
 * caller, never a pooled slice), each succeeding or failing alone: one message
 * and one allocation per batch, not per ~32 KiB object (per-object buffers made
 * the NBD server's main thread spend more time collecting garbage than sending
 * replies). The encoded files are read first, side by side, so their declared
 * sizes give the buffer's size and each object decodes straight into its place
 * (decoding into a scratch run and copying that out cost as much as the zstd
 * decoding itself: a memcpy into fresh pages).
 */
export function readMany(items: Placed[], source: string, onError: (err: unknown) => ManyOutcome): { data: Buffer; outcomes: ManyOutcome[] } {
  const read: Array<{ start: number; end: number; size: number } | ManyOutcome> = [];
  let at = 0;
  let len = 0;
  for (let i = 0; i < items.length; i++) {
    try {
      const n = readPlacedInto(many, at, items, i, source);
      const claimed = singleFrameSize(many.buf.subarray(at, at + n), MAX_OBJECT_SIZE);
      // a bad frame gets no room: decodeObjectInto below refuses it with the reason
      const size = typeof claimed === 'number' ? claimed : 0;
      read.push({ start: at, end: at + n, size });
      at += n;
      len += size;
    } catch (err) {
      read.push(onError(err));
    }
  }
  const data = Buffer.allocUnsafeSlow(len);
  let place = 0;
  const outcomes = items.map((it, i): ManyOutcome => {
    const r = read[i]!;
    if (!('start' in r)) return r;
    const where = place;
    place += r.size;
    try {
      decodeObjectInto(it.digest, many.buf.subarray(r.start, r.end), data.subarray(where, where + r.size), source);
      return { at: where, size: r.size };
    } catch (err) {
      return onError(err);
    }
  });
  return { data, outcomes };
}

let scratch = Buffer.allocUnsafe(256 << 10);

/**
 * decodeObject into this thread's scratch buffer: a view valid until the next
 * call, for bytes that are only written somewhere and dropped (a pull's
 * objects), without a fresh buffer per object.
 */
export function decodeToScratch(digest: string, encoded: Uint8Array, source: string): Buffer {
  const claimed = singleFrameSize(encoded, MAX_OBJECT_SIZE);
  const size = typeof claimed === 'number' ? claimed : 0;
  if (size > scratch.length) scratch = Buffer.allocUnsafe(size);
  const view = scratch.subarray(0, size);
  decodeObjectInto(digest, encoded, view, source); // a bad frame throws before the size matters
  return view;
}
