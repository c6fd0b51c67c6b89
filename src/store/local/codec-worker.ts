/**
 * Worker thread for the CPU-heavy half of object I/O: zstd (de)compression and
 * hash verification, and the reads of objects (pack stretches, loose files) and
 * writes into output files, so decoded data never travels to the main thread on
 * export. Appends to packs happen on the main thread (pack-writer.ts): one
 * writer per store, which a put's encoded bytes (moved back, not copied) reach
 * in one message. See codec-pool.ts.
 *
 * File I/O here is synchronous on purpose: this thread has nothing else to do
 * while it waits, and each async call is a round trip through libuv's thread
 * pool, whose wake-ups cost more than the (page-cache) I/O itself on a busy
 * 2-core machine.
 */
import { parentPort, threadId } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { createRequire } from 'node:module';
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { encodeObject, decodeObject, decodeObjectInto, singleFrameSize, MAX_OBJECT_SIZE } from '../codec.js';
import { copyRuns, decodeToScratch, readMany, readPlaced, writeSparseSync, type ManyOutcome, type Placed, type RunItem } from './read-runs.js';
import { VmdnError, asVmdnError } from '../../errors.js';
import { sha256 } from '../digest.js';
import { gcEvery } from '../../util/gc.js';
import { unpackRunTable, type RunTable } from './run-table.js';
import { asBuffer } from '../../container/writer-file.js';
import { decodeIntoSlab, type SlabItem } from './slab-decode.js';

export type { Placed };

const collect = gcEvery(128 * 1024 * 1024);

/** objects/ab/abcdef...: two-hex-digit fan-out keeps directories small. (No path.join: called per object, `objectsDir` is already normal.) */
export function objectPath(objectsDir: string, digest: string): string {
  return `${objectsDir}/${digest.slice(0, 2)}/${digest}`;
}

// unique per process and thread without a random draw per object; the pid
// stays the second-last dot field, which LocalStore.cleanTmp reads
const tmpTag = `${process.pid}.${threadId}-${randomBytes(4).toString('hex')}-`;
let tmpSeq = 0;

function tmpPath(finalPath: string, tmpDir: string): string {
  return `${tmpDir}/${path.basename(finalPath)}.${tmpTag}${(tmpSeq++).toString(36)}`;
}

export type CodecRequest =
  /**
   * Hash (unless `digest` is given) and compress: the encoded bytes come back (the main
   * thread appends them to its pack). With `index`, an object that index already holds
   * is not compressed (`known`: a re-import costs a hash per chunk, not a compression).
   */
  | { op: 'put'; id: number; digest?: string; data: Uint8Array; level: number; index?: string }
  | ({ op: 'get'; id: number; source: string } & Placed)
  | ({ op: 'verify'; id: number; source: string } & Placed)
  /**
   * Decode, verify and write the object into `outPath` (or the caller's open
   * descriptor `fd`: workers share the process's descriptors) at `offset`
   * (sparse: all-zero 4 KiB blocks skipped). With `length`, an object of any
   * other size is refused before a byte is written (the caller's room ends there).
   */
  | ({ op: 'copy'; id: number; source: string; outPath?: string; fd?: number; offset: number; length?: number } & Placed)
  /**
   * Encoded bytes from elsewhere (a download), already appended to a pack by the
   * main thread: decode and verify (the main thread indexes them only if they
   * pass), and write the data into `outPath` at every offset.
   */
  | { op: 'accept'; id: number; digest: string; encoded: Uint8Array; source: string; outPath?: string; offsets?: number[] }
  /**
   * `accept` for many objects in one message (one batch response's worth): the
   * per-message cost (two thread hand-offs, a promise, a wake-up) was a fifth
   * of a pull's worker time. Each object succeeds or fails on its own.
   */
  | { op: 'acceptMany'; id: number; items: AcceptItem[]; source: string; outPath?: string }
  | { op: 'release'; id: number; outPath: string }
  /** `copy` for many objects in one message, into `outPath` or `fd`: see read-runs.ts. Fails whole on the first bad object. */
  | { op: 'copyRuns'; id: number; items: RunItem[]; source: string; outPath?: string; fd?: number }
  /** copyRuns with the items as flat data (run-table.ts): what LocalStore.copyAll sends. */
  | ({ op: 'copyTable'; id: number; source: string; outPath?: string; fd?: number } & RunTable)
  /** `get` for many objects: their bytes in one buffer, each object's place in it or its error (read-runs.ts). */
  | { op: 'getMany'; id: number; items: Placed[]; source: string }
  /** `get` for many objects, each decoded into its slot of a shared slab (slab-decode.ts): nothing moved back. */
  | { op: 'getInto'; id: number; items: SlabItem[]; slab: SharedArrayBuffer | ArrayBuffer; source: string };

export interface AcceptItem {
  digest: string;
  encoded: Uint8Array;
  offsets?: number[];
}

/** One object's outcome in an acceptMany: its decoded size, or why it was refused. */
export type AcceptOutcome = { size: number } | { error: { code: string; message: string; data: Record<string, unknown> } };

export type CodecResponse =
  | { id: number; ok: true; digest?: string; known?: boolean; storedSize?: number; size?: number; data?: Uint8Array; encoded?: Uint8Array; outcomes?: AcceptOutcome[]; places?: ManyOutcome[] }
  | { id: number; ok: false; error: { code: string; message: string; data: Record<string, unknown> } };

/** Write via temp file + rename so a killed process never leaves a partial object under its final name. */
export async function writeAtomic(finalPath: string, tmpDir: string, bytes: Uint8Array): Promise<void> {
  const tmp = tmpPath(finalPath, tmpDir);
  // a failed write (ENOSPC) must not leave its partial temp file behind
  await fs.writeFile(tmp, bytes).catch(async (err) => {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  });
  try {
    await fs.rename(tmp, finalPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await fs.mkdir(path.dirname(finalPath), { recursive: true });
    await fs.rename(tmp, finalPath);
  }
}

// loaded at the first put that asks (an import's): a worker that only reads (export, nbd) starts without it
let sqlite: typeof Database | undefined;
let indexed: { file: string; db: Database.Database; stmt: Database.Statement<[Buffer]> } | undefined;

/** Whether the store index `file` holds `digest` (committed rows; false when it cannot tell). */
function isIndexed(file: string, digest: string): boolean {
  try {
    if (indexed?.file !== file) {
      indexed?.db.close();
      indexed = undefined;
      sqlite ??= createRequire(import.meta.url)('better-sqlite3') as typeof Database;
      const db = new sqlite(file, { readonly: true, fileMustExist: true, timeout: 1000 });
      indexed = { file, db, stmt: db.prepare<[Buffer]>('SELECT 1 FROM objects WHERE digest = ?') };
    }
    return indexed.stmt.get(Buffer.from(digest, 'hex')) !== undefined;
  } catch {
    return false;
  }
}

// one descriptor per output file and worker, closed by 'release'
const targets = new Map<string, number>();

function target(outPath: string): number {
  let fd = targets.get(outPath);
  if (fd === undefined) {
    fd = fsSync.openSync(outPath, 'r+');
    targets.set(outPath, fd);
  }
  return fd;
}

/**
 * pwrite `data` at `offset` with the raw writer's rule: all-zero 4 KiB blocks stay holes.
 * Synchronous, so a scratch buffer (decodeToScratch) is written before anything reuses it.
 */
async function writeSparse(fd: number, data: Uint8Array, offset: number): Promise<void> {
  writeSparseSync(fd, asBuffer(data), data.length, offset);
}

/** Decode and verify one downloaded object, keep its bytes, place its data; resolves to its decoded size. */
async function accept(item: AcceptItem, where: { source: string; outPath?: string }): Promise<number> {
  // verified before anything is kept: a bad copy leaves no trace in the store or the image
  // into scratch: written below (synchronously, see writeSparse) and dropped
  const data = decodeToScratch(item.digest, item.encoded, where.source);
  collect(item.encoded.length); // the moved-in encoded buffers are what piles up now
  if (where.outPath) for (const off of item.offsets ?? []) await writeSparse(target(where.outPath), data, off);
  return data.length;
}

async function handle(req: CodecRequest): Promise<CodecResponse & { transfer?: ArrayBuffer[] }> {
  if (req.op === 'put') {
    const digest = req.digest ?? sha256(req.data);
    if (req.index && isIndexed(req.index, digest)) return { id: req.id, ok: true, digest, known: true, size: req.data.length };
    const enc = encodeObject(req.data, req.level);
    const own = enc.byteOffset === 0 && enc.byteLength === enc.buffer.byteLength ? enc : new Uint8Array(enc);
    return { id: req.id, ok: true, digest, encoded: own, storedSize: enc.length, size: req.data.length, transfer: [own.buffer as ArrayBuffer] };
  }
  if (req.op === 'release') {
    const fd = targets.get(req.outPath);
    targets.delete(req.outPath);
    if (fd !== undefined) fsSync.closeSync(fd);
    return { id: req.id, ok: true };
  }
  if (req.op === 'accept') {
    const size = await accept(req, req);
    return { id: req.id, ok: true, size, storedSize: req.encoded.length };
  }
  if (req.op === 'acceptMany') {
    const outcomes: AcceptOutcome[] = [];
    for (const item of req.items) {
      try {
        outcomes.push({ size: await accept(item, req) });
      } catch (err) {
        const e = asVmdnError(err);
        outcomes.push({ error: { code: e.code, message: e.message, data: e.data } });
      }
    }
    return { id: req.id, ok: true, outcomes };
  }
  if (req.op === 'copyRuns') {
    return { id: req.id, ok: true, size: copyRuns(req.fd ?? target(req.outPath!), req.items, req.source) };
  }
  if (req.op === 'copyTable') {
    return { id: req.id, ok: true, size: copyRuns(req.fd ?? target(req.outPath!), unpackRunTable(req), req.source) };
  }
  if (req.op === 'getMany') {
    const { data, outcomes } = readMany(req.items, req.source, (err) => {
      const e = asVmdnError(err);
      return { error: { code: e.code, message: e.message, data: e.data } };
    });
    collect(data.length);
    return { id: req.id, ok: true, data, places: outcomes, transfer: [data.buffer as ArrayBuffer] };
  }
  if (req.op === 'getInto') {
    const places = decodeIntoSlab(req.items, req.slab as SharedArrayBuffer, req.source, (err) => {
      const e = asVmdnError(err);
      return { error: { code: e.code, message: e.message, data: e.data } };
    });
    // a plain ArrayBuffer (moved here by ordered-reads.ts) goes back the same way, as `data`
    if (req.slab instanceof SharedArrayBuffer) return { id: req.id, ok: true, places };
    return { id: req.id, ok: true, places, data: new Uint8Array(req.slab), transfer: [req.slab] };
  }
  if (req.op === 'get') {
    // decoded straight into the buffer that is moved to the caller: no copy, no pooled slice
    const enc = readPlaced([req], 0, req.source);
    const claimed = singleFrameSize(enc, MAX_OBJECT_SIZE);
    // its own ArrayBuffer (transferable), not zero-filled: the decoder fills all of it
    const data = Buffer.allocUnsafeSlow(typeof claimed === 'number' ? claimed : 0);
    decodeObjectInto(req.digest, enc, data, req.source); // a bad frame throws before the size matters
    collect(data.length);
    return { id: req.id, ok: true, data, size: data.length, storedSize: enc.length, transfer: [data.buffer as ArrayBuffer] };
  }
  const enc = readPlaced([req], 0, req.source);
  const data = decodeObject(req.digest, enc, req.source);
  collect(data.length);
  if (req.op === 'copy') {
    if (req.length !== undefined && data.length !== req.length) throw new VmdnError('E_CORRUPT_OBJECT', `object ${req.digest.slice(0, 12)} has ${data.length} bytes, expected ${req.length}`, { digest: req.digest });
    await writeSparse(req.fd ?? target(req.outPath!), data, req.offset);
    return { id: req.id, ok: true, size: data.length, storedSize: enc.length };
  }
  return { id: req.id, ok: true, size: data.length, storedSize: enc.length };
}

parentPort?.on('message', (req: CodecRequest) => {
  if ('data' in req) collect(req.data.length);
  handle(req).then(
    ({ transfer, ...res }) => parentPort!.postMessage(res, transfer ?? []),
    (err) => {
      const e = asVmdnError(err);
      parentPort!.postMessage({ id: req.id, ok: false, error: { code: e.code, message: e.message, data: e.data } });
    },
  );
});
