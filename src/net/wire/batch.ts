/**
 * Object batches (docs/http-api.md, "Batches"): `POST /v1/objects/batch`
 * with up to MAX_BATCH digests answers the server's copies in one streamed
 * body of records, each the 32-byte binary digest, a 4-byte big-endian
 * length and that many stored bytes, in request order; objects the server
 * lacks are left out. A pull spends most of its time on per-request HTTP
 * work at both ends when objects are ~35 KiB; a batch pays it once per few
 * hundred objects. Nothing changes for verification: every record is decoded
 * and hashed by the client like a single GET's body. Batches are not
 * cacheable by generic HTTP caches, so a client falls back to per-object GETs
 * when a server (or an nginx in front, see the docs) answers 404.
 */
import type http from 'node:http';
import { MAX_OBJECT_SIZE } from '../../store/codec.js';
import type { Digest } from '../../store/digest.js';
import { VmdnError } from '../../errors.js';
import { drained } from '../../util/drain.js';
import { isDigestList, NO_STORE, readJson } from './http-api.js';

export const BATCH_PATH = '/v1/objects/batch';
export const BATCH_CONTENT_TYPE = 'application/vnd.vmdn.objects';
export const MAX_BATCH = 1024;
const RECORD_HEAD = 36;
/** Objects in a window when their sizes are unknown (an edge's upstream fetches overlap within one). */
const LOOKAHEAD = 16;
/** Stored bytes of a window: its records go in one socket write. */
const WRITE_GROUP = 1 << 20;
/** Windows read ahead of the one being written (the one written included). */
const WINDOWS_AHEAD = 2;

/** Stored bytes all of a server's batches may hold at once (read, not yet taken by the socket). */
export const BATCH_BUDGET = 32 << 20;

/** The digests of a batch request body, each once (a repeated one would be sent again); E_USAGE for anything else. */
export async function readBatchRequest(req: http.IncomingMessage): Promise<Digest[]> {
  const body = await readJson<{ digests?: unknown }>(req, 128 << 10);
  if (!isDigestList(body.digests) || body.digests.length > MAX_BATCH) {
    throw new VmdnError('E_USAGE', `body must be {"digests": [up to ${MAX_BATCH} digests]}`);
  }
  return [...new Set(body.digests)];
}

/**
 * A byte budget shared by concurrent work, granted in request order. A claim
 * larger than the whole budget is granted alone (cut to the budget's size).
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: Array<{ n: number; go: () => void }> = [];
  constructor(readonly capacity: number) {}

  /** Resolves to the bytes granted, to be given back to release. */
  acquire(bytes: number): Promise<number> {
    const n = Math.min(bytes, this.capacity);
    if (!this.waiting.length && this.used + n <= this.capacity) {
      this.used += n;
      return Promise.resolve(n);
    }
    return new Promise((resolve) => this.waiting.push({ n, go: () => resolve(n) }));
  }

  release(n: number): void {
    this.used -= n;
    while (this.waiting.length && this.used + this.waiting[0]!.n <= this.capacity) {
      const w = this.waiting.shift()!;
      this.used += w.n;
      w.go();
    }
  }

  get held(): number {
    return this.used;
  }
}

export interface BatchLimits {
  /** Shared by the server's batches: each object's stored size is held from before it is read until the socket took it. */
  budget: ByteBudget;
  /** An object's stored size, as the server's index records it (undefined: left out, holds nothing). */
  sizeOf: (d: Digest) => number | undefined;
}

/**
 * Answer a batch: `source` gives each object's stored bytes, or undefined
 * when this server cannot have it (left out); `many`, when given, gives a
 * window's at once instead (a local store reads adjacent pack entries with one
 * read). Objects go in windows of about WRITE_GROUP stored bytes, each one
 * socket write, the next windows read meanwhile. A failure after the header
 * went out cuts the body; the client takes the rest one by one.
 *
 * With `limits` and `many` the body's length is known before anything is read
 * (each object's stored size, from the index it reads by): it is sent as Content-Length, not
 * chunked. Chunked, every record was two HTTP chunks (head, bytes): two body
 * callbacks, each a copied Buffer and a 'data' event at the client, ~30,000
 * for an image of 15,000 objects; a plain body arrives in one per socket read.
 * An object that then reads as absent or of another size cuts the body there.
 */
export async function serveBatch(res: http.ServerResponse, digests: Digest[], source: (d: Digest) => Promise<Uint8Array | undefined>, limits?: BatchLimits, many?: (ds: Digest[]) => Promise<Array<Uint8Array | undefined>>): Promise<{ objects: number; bytes: number }> {
  // sizes a store reads by (`many`: a local store's index), not ones a listing reported
  const length = limits && many ? bodyLength(digests, limits.sizeOf) : undefined;
  res.writeHead(200, { 'content-type': BATCH_CONTENT_TYPE, 'cache-control': NO_STORE, ...(length !== undefined ? { 'content-length': length } : {}) });
  const read = many ?? ((ds: Digest[]) => Promise.all(ds.map(source)));
  const ahead: Array<{ ds: Digest[]; p: Promise<Array<Uint8Array | undefined>>; held: Promise<number> }> = [];
  let next = 0;
  const fill = () => {
    while (next < digests.length && ahead.length < WINDOWS_AHEAD) {
      // without sizes (no limits) a window is LOOKAHEAD objects
      const ds: Digest[] = [];
      let size = 0;
      while (next < digests.length && (ds.length === 0 || (limits ? size < WRITE_GROUP : ds.length < LOOKAHEAD))) {
        const d = digests[next++]!;
        ds.push(d);
        size += limits?.sizeOf(d) ?? 0;
      }
      const held = limits ? limits.budget.acquire(size) : Promise.resolve(0);
      const p = held.then(() => read(ds));
      p.catch(() => {}); // surfaced when awaited in order
      ahead.push({ ds, p, held });
    }
  };
  let objects = 0;
  let bytes = 0;
  let held = 0;
  const release = (n: number) => {
    if (n) limits!.budget.release(n);
  };
  try {
    while (!res.destroyed && (fill(), ahead.length)) {
      const w = ahead.shift()!;
      held = await w.held;
      const encs = await w.p;
      const heads = Buffer.allocUnsafe(RECORD_HEAD * w.ds.length);
      res.cork();
      let ok = true;
      const cut = length === undefined ? -1 : encs.findIndex((enc, i) => (enc?.length ?? -1) !== (limits!.sizeOf(w.ds[i]!) ?? -1));
      encs.forEach((enc, i) => {
        if (!enc || (cut >= 0 && i >= cut)) return;
        const head = heads.subarray(RECORD_HEAD * i, RECORD_HEAD * (i + 1));
        head.write(w.ds[i]!, 0, 32, 'hex');
        head.writeUInt32BE(enc.length, 32);
        res.write(head);
        ok = res.write(enc);
        objects++;
        bytes += enc.length;
      });
      res.uncork();
      // not what the index said (gone meanwhile, or another size): the promised length cannot be kept
      if (cut >= 0) {
        res.destroy();
        break;
      }
      // uncork() may already have flushed and emitted 'drain' (Node 26 does, synchronously): wait only if still needed
      if (!ok && res.writableNeedDrain && !res.destroyed) await drained(res);
      // taken by the socket (or never to be): what the window held is free again
      release(held);
      held = 0;
    }
    res.end();
  } catch (err) {
    res.destroy(err as Error);
  } finally {
    release(held);
    for (const a of ahead) void a.held.then(release);
  }
  return { objects, bytes };
}

/** Bytes of the records of the objects `sizeOf` knows (the others are left out). */
function bodyLength(digests: Digest[], sizeOf: (d: Digest) => number | undefined): number {
  let n = 0;
  for (const d of digests) {
    const size = sizeOf(d);
    if (size !== undefined) n += RECORD_HEAD + size;
  }
  return n;
}

/**
 * Incremental reader of a batch body. Each record's bytes land in a buffer
 * `alloc` gives (by default one of their own, movable to a worker without a copy),
 * or, when `viewOf` gives one, are a view of the chunk that holds the whole
 * record (no copy). Throws on a record the request did not ask for, a
 * repeated one, or an impossible length.
 */
export class BatchParser {
  private readonly head = Buffer.alloc(RECORD_HEAD);
  private headLen = 0;
  private body: Buffer | undefined;
  private bodyLen = 0;
  private digest = '';

  /** `alloc` gives each record's buffer (exactly its length); by default one of its own. */
  constructor(
    private readonly wanted: Set<Digest>,
    private readonly onRecord: (digest: Digest, encoded: Buffer) => void,
    private readonly alloc: (length: number) => Buffer = (n) => Buffer.allocUnsafeSlow(n),
    private readonly viewOf?: (chunk: Buffer, start: number, end: number) => Buffer | undefined,
  ) {}

  /** True between records: a body may end here. */
  get atBoundary(): boolean {
    return this.body === undefined && this.headLen === 0;
  }

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (!this.body) {
        const n = Math.min(RECORD_HEAD - this.headLen, chunk.length - off);
        chunk.copy(this.head, this.headLen, off, off + n);
        this.headLen += n;
        off += n;
        if (this.headLen < RECORD_HEAD) return;
        this.headLen = 0;
        this.digest = this.head.toString('hex', 0, 32);
        const len = this.head.readUInt32BE(32);
        if (!this.wanted.has(this.digest)) throw new Error(`batch answered ${this.digest.slice(0, 12)}, not asked for (or twice)`);
        if (len > MAX_OBJECT_SIZE) throw new Error(`batch record of ${len} bytes`);
        const view = len > 0 && off + len <= chunk.length ? this.viewOf?.(chunk, off, off + len) : undefined;
        if (view) {
          off += len;
          this.wanted.delete(this.digest);
          this.onRecord(this.digest, view);
          continue;
        }
        this.body = this.alloc(len);
        this.bodyLen = 0;
      }
      if (this.body.length === 0) {
        this.complete();
        continue;
      }
      const n = Math.min(this.body.length - this.bodyLen, chunk.length - off);
      chunk.copy(this.body, this.bodyLen, off, off + n);
      this.bodyLen += n;
      off += n;
      if (this.bodyLen === this.body.length) this.complete();
    }
  }

  private complete(): void {
    const b = this.body!;
    this.body = undefined;
    this.wanted.delete(this.digest);
    this.onRecord(this.digest, b);
  }
}
