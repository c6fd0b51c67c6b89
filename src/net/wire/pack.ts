/**
 * Packs (docs/http-api.md, "Packs"): a batch answered as one zstd frame over
 * the objects' raw bytes, compressed against reference objects the client
 * already holds. Per-object compression cannot use what two new objects
 * share (coturn's tools link the same code; dpkg's status and status-old are
 * one text twice), nor what a changed object shares with the one it replaces
 * (a tree chunk with one line inserted). A pack gets both: the objects are
 * compressed together, with the client's nominated references as a raw-content
 * dictionary, so what crosses the network is close to what is really new.
 *
 * Frame content: records of a 32-byte digest, a 4-byte big-endian length and
 * that many raw bytes, in request order (objects the server lacks left out).
 * The dictionary is PACK_DICT_TAG followed by the raw bytes of the first
 * `refsUsed` references in request order, which the server tells in a header:
 * it stops at the first reference it does not have.
 *
 * Every record is hashed by the receiver before anything is kept; a frame that
 * does not decode, or a record the request did not ask for, fails the whole pack
 * (the client then takes the objects another way).
 */
import type http from 'node:http';
import { Compressor, Decompressor } from 'zstd-napi';
import { MAX_OBJECT_SIZE, maxEncodedSize, singleFrameSize } from '../../store/codec.js';
import { sha256, type Digest } from '../../store/digest.js';
import { VmdnError } from '../../errors.js';
import { isDigestList, NO_STORE, readJson } from './http-api.js';
import { MAX_BATCH } from './batch.js';

export const PACK_PATH = '/v1/objects/pack';
export const PACK_CONTENT_TYPE = 'application/vnd.vmdn.pack';
export const PACK_REFS_HEADER = 'x-vmdn-pack-refs';
/** Raw bytes of objects one pack may carry (the request is cut to fit by the client). */
export const MAX_PACK_BYTES = 32 << 20;
/** Raw bytes of references one pack may use as its dictionary. */
export const MAX_PACK_REF_BYTES = 16 << 20;
export const MAX_PACK_REFS = 4096;
/** Never empty, never zstd's dictionary magic: the dictionary is always raw content. */
const PACK_DICT_TAG = Buffer.from('vmdn-pack-v1\n');
const RECORD_HEAD = 36;
/** Enough window for the dictionary and the whole pack (64 MiB + tag < 2^27). */
const WINDOW_LOG = 27;

/** The most raw content a pack of `n` objects can hold; its encoded form is bounded by maxEncodedSize of this. */
export function maxPackContent(n: number): number {
  return n * RECORD_HEAD + MAX_PACK_BYTES;
}

export interface PackObject {
  digest: Digest;
  data: Uint8Array;
}

/**
 * Level by size: a small pack (a delta: tens of new files) is worth zstd's
 * best; a large one (a first pull) must not cost the server more than the
 * network it saves.
 */
export function packLevel(rawBytes: number): number {
  if (rawBytes <= 1 << 20) return 19;
  if (rawBytes <= 8 << 20) return 12;
  return 6;
}

function dictionary(refs: Uint8Array[]): Buffer {
  return Buffer.concat([PACK_DICT_TAG, ...refs]);
}

// One (de)compression context per thread, reused: each holds tens of MiB of
// native tables and a copy of the dictionary that the JS garbage collector
// does not see, so one per pack piled up to gigabytes on a busy origin.
// Calls are synchronous, so a thread never uses one twice at once.
let compressor: Compressor | undefined;
let decompressor: Decompressor | undefined;

export function encodePack(objects: PackObject[], refs: Uint8Array[], level = packLevel(objects.reduce((n, o) => n + o.data.length, 0))): Buffer {
  const parts: Uint8Array[] = [];
  for (const o of objects) {
    const head = Buffer.allocUnsafe(RECORD_HEAD);
    head.write(o.digest, 0, 32, 'hex');
    head.writeUInt32BE(o.data.length, 32);
    parts.push(head, o.data);
  }
  const c = (compressor ??= new Compressor());
  c.setParameters({ compressionLevel: level, windowLog: WINDOW_LOG });
  try {
    c.loadDictionary(dictionary(refs));
    return c.compress(Buffer.concat(parts));
  } finally {
    c.setParameters({}); // drops the dictionary's copy
  }
}

/**
 * Decode a pack and check every record: asked for, once, within bounds,
 * hashing to its digest. Throws E_CORRUPT_OBJECT for anything else.
 */
export function decodePack(frame: Uint8Array, refs: Uint8Array[], wanted: ReadonlySet<Digest>, source: string): PackObject[] {
  const bad = (why: string) => new VmdnError('E_CORRUPT_OBJECT', `pack from ${source}: ${why}`, { source });
  const limit = maxPackContent(wanted.size);
  if (frame.length > maxEncodedSize(limit)) throw bad(`${frame.length} bytes on the wire, more than ${wanted.size} objects can be`);
  // one frame, its size declared and within what the request can hold, nothing after it: checked before decoding
  const size = singleFrameSize(frame, limit);
  if (typeof size === 'string') throw bad(/^declares/.test(size) ? `frame ${size}: more than ${wanted.size} objects can be` : `bad zstd frame (${size})`);
  let raw: Buffer;
  const d = (decompressor ??= new Decompressor());
  try {
    d.setParameters({ windowLogMax: WINDOW_LOG });
    d.loadDictionary(dictionary(refs));
    raw = d.decompress(frame);
  } catch (err) {
    throw bad(`undecodable (${(err as Error).message})`);
  } finally {
    d.setParameters({});
  }
  if (raw.length !== size) throw bad(`decoded to ${raw.length} bytes, the frame says ${size}`);
  const out: PackObject[] = [];
  const seen = new Set<Digest>();
  for (let p = 0; p < raw.length; ) {
    if (p + RECORD_HEAD > raw.length) throw bad('truncated record header');
    const digest = raw.toString('hex', p, p + 32);
    const len = raw.readUInt32BE(p + 32);
    p += RECORD_HEAD;
    if (!wanted.has(digest) || seen.has(digest)) throw bad(`record ${digest.slice(0, 12)} not asked for (or twice)`);
    if (len > MAX_OBJECT_SIZE || p + len > raw.length) throw bad(`record ${digest.slice(0, 12)} of ${len} bytes overruns the pack`);
    const data = raw.subarray(p, p + len);
    p += len;
    const actual = sha256(data);
    if (actual !== digest) throw bad(`record ${digest.slice(0, 12)} hashes to ${actual.slice(0, 12)}`);
    seen.add(digest);
    out.push({ digest, data });
  }
  return out;
}

export interface PackRequest {
  digests: Digest[];
  refs: Digest[];
}

/**
 * `{"digests": [...], "refs": [...]}`; E_USAGE for anything else. Each digest
 * is taken once (a repeated one would be read and compressed again); the
 * references stop at the first repeated one, keeping them a prefix of the
 * client's list as the pack's dictionary must be.
 */
export async function readPackRequest(req: http.IncomingMessage): Promise<PackRequest> {
  const body = await readJson<{ digests?: unknown; refs?: unknown }>(req, 512 << 10);
  const refs = body.refs ?? [];
  if (!isDigestList(body.digests) || body.digests.length > MAX_BATCH || !isDigestList(refs) || refs.length > MAX_PACK_REFS) {
    throw new VmdnError('E_USAGE', `body must be {"digests": [up to ${MAX_BATCH} digests], "refs": [up to ${MAX_PACK_REFS} digests]}`);
  }
  const seen = new Set<Digest>();
  const firstRepeat = refs.findIndex((d) => seen.size === seen.add(d).size);
  return { digests: [...new Set(body.digests)], refs: firstRepeat < 0 ? refs : refs.slice(0, firstRepeat) };
}

/**
 * Packs an origin builds at once, and requests that may wait for a turn. One:
 * a pack's compressor alone takes 70-200 MiB (level and references), and the
 * pack worker runs one job at a time anyway.
 */
export const PACK_JOBS = 1;
export const PACK_QUEUE = 4;
/** Seconds a busy origin asks a client to wait (503, Retry-After); a pull takes batches instead. */
export const PACK_RETRY_AFTER = 2;

/**
 * The origin's limit on pack work: a pack holds up to 48 MiB of raw objects
 * and references and costs seconds of CPU, so however many requests arrive,
 * PACK_JOBS run, PACK_QUEUE wait, and the rest are refused at once (503).
 */
export class PackSlots {
  private running = 0;
  private readonly queue: Array<() => void> = [];
  constructor(private readonly jobs = PACK_JOBS, private readonly waiting = PACK_QUEUE) {}

  /** Resolves to the slot's release once it is this request's turn; undefined when the queue is full too. */
  take(): Promise<() => void> | undefined {
    if (this.running < this.jobs) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    if (this.queue.length >= this.waiting) return undefined;
    return new Promise((resolve) => this.queue.push(() => resolve(this.releaser())));
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.queue.shift();
      if (next) next(); // the slot passes on
      else this.running--;
    };
  }
}

/** An object named for a pack: the file that holds it, or its encoded bytes (read, decoded and verified where the pack is built). */
export type PackSource = { digest: Digest; path: string } | { digest: Digest; encoded: Uint8Array };

export interface BuiltPack {
  frame: Uint8Array;
  /** The objects in it, in order (a file gone meanwhile is left out). */
  sent: Digest[];
  /** The references used: a prefix of those given (stopping at one gone meanwhile). */
  refsUsed: number;
  rawBytes: number;
}

/**
 * Answer a pack. Objects and references are chosen by the sizes `store`
 * records before anything is read, so no request makes the server hold more
 * than the limits; objects beyond MAX_PACK_BYTES are left out like missing
 * ones (the client asks again for what did not come). `build` reads, verifies
 * and compresses them (pack-worker.ts: off the event loop, its memory in one thread).
 */
export async function servePack(
  res: http.ServerResponse,
  r: PackRequest,
  store: { size: (d: Digest) => number | undefined; source: (d: Digest) => Promise<PackSource | undefined> },
  build: (objects: PackSource[], refs: PackSource[]) => Promise<BuiltPack>,
): Promise<{ sent: Digest[]; bytes: number; rawBytes: number }> {
  const pick = async (ds: Digest[], limit: number, stopAtMissing: boolean): Promise<PackSource[]> => {
    const chosen: Digest[] = [];
    let n = 0;
    for (const d of ds) {
      const size = store.size(d);
      if (size === undefined) {
        if (stopAtMissing) break; // references must be a prefix of the request's list
        continue;
      }
      if ((chosen.length || stopAtMissing) && n + size > limit) break;
      chosen.push(d);
      n += size;
    }
    const out: PackSource[] = [];
    for (const s of await Promise.all(chosen.map((d) => store.source(d)))) {
      if (s) out.push(s);
      else if (stopAtMissing) break;
    }
    return out;
  };
  const pack = await build(await pick(r.digests, MAX_PACK_BYTES, false), await pick(r.refs, MAX_PACK_REF_BYTES, true));
  res.writeHead(200, { 'content-type': PACK_CONTENT_TYPE, 'cache-control': NO_STORE, 'content-length': pack.frame.length, [PACK_REFS_HEADER]: String(pack.refsUsed) });
  res.end(pack.frame);
  return { sent: pack.sent, bytes: pack.frame.length, rawBytes: pack.rawBytes };
}
