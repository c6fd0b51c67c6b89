/**
 * A remote vmdn server (origin or edge) as a ReadableStore. Every object is
 * decoded and hashed before it is returned; one that fails is discarded and
 * fetched again with `Cache-Control: no-cache` so caches on the way go back to
 * their source. Connection failures and 5xx answers are retried with
 * exponential backoff; connections are kept alive and reused.
 */
import http from 'node:http';
import https from 'node:https';
import { armDeadline, errorText, exchangeOnce, remoteError, SMALL_BODY, type Reply } from './http-exchange.js';
import { decodeObject, MAX_OBJECT_SIZE, maxEncodedSize } from '../../store/codec.js';
import { isDigest, type Digest } from '../../store/digest.js';
import { formatImageRef, type ImageRef } from '../../store/image-name.js';
import type { ObjectStat, ReadableStore, ReadOptions } from '../../store/types.js';
import { VmdnError } from '../../errors.js';
import { objectUrlPath, parseJson, profilePath, refPath } from '../wire/http-api.js';
import type { RecordCheck } from './trust.js';

/** The most an object's answer can be: its encoded form at the object bound. */
export const MAX_OBJECT_BODY = maxEncodedSize(MAX_OBJECT_SIZE);
/** Default bound of any other answer: JSON (a push's missing list of 100000 digests is 6.7 MB). */
export const MAX_JSON_BODY = 16 << 20;

import type { BatchResult } from '../../store/cache/caching-store.js';
export type { BatchResult };

import { exchangeBatch, type BatchHost, type BatchOptions, type BatchRecord } from './batch-fetch.js';
export type { BatchRecord };

export interface HttpStoreOptions {
  /** Attempts per request on connection errors / 5xx before E_UNREACHABLE. */
  retries?: number;
  /** First backoff delay; doubles each attempt (with jitter) up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Fetches of one object that fail verification before E_CORRUPT_OBJECT. */
  verifyAttempts?: number;
  /** Parallel keep-alive connections. */
  connections?: number;
  /** Idle timeout: an attempt fails when no byte arrives for this long. */
  timeoutMs?: number;
  /**
   * Overall deadline of an attempt: this long, plus the time its bytes take at
   * minBytesPerSecond (so a large object may take longer, a server dripping a
   * byte now and then cannot hold a request open). Default 120 s, or
   * $VMDN_HTTP_DEADLINE_MS.
   */
  deadlineMs?: number;
  /** Slowest transfer rate the deadline allows for beyond deadlineMs (default 32 KiB/s). */
  minBytesPerSecond?: number;
  token?: string;
  /** Ask for objects in batches (POST, never cached by HTTP caches): off behind a generic cache or CDN. */
  batches?: boolean;
  /** Check a name's signed record before its manifest is believed (`--trust`, trust.ts). */
  trust?: RecordCheck;
}

export interface HttpStoreStats {
  requests: number;
  objectsFetched: number;
  bytesFetched: number;
  retries: number;
  corrupt: number;
}

export type { Reply };

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason); }, { once: true });
  });

export class HttpStore implements ReadableStore {
  readonly base: string;
  readonly stats: HttpStoreStats = { requests: 0, objectsFetched: 0, bytesFetched: 0, retries: 0, corrupt: 0 };
  private readonly agent: http.Agent;
  /** False once the server answered a batch with "no such endpoint" (docs/http-api.md, Batches). */
  batches = true;
  /** Batches whose exchange failed (connection refused or cut, timeout, an error status other than "no batches"). */
  batchesFailed = 0;
  private readonly o: Required<Omit<HttpStoreOptions, 'token' | 'batches' | 'trust'>> & { token?: string };
  private readonly trust: RecordCheck | undefined;

  constructor(url: string, opts: HttpStoreOptions = {}) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new VmdnError('E_USAGE', `invalid URL "${url}"`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new VmdnError('E_USAGE', `unsupported URL scheme ${u.protocol} (use http or https)`);
    this.base = u.href.replace(/\/+$/, '');
    const { batches, trust, ...rest } = opts;
    this.trust = trust;
    const deadlineMs = Number(process.env.VMDN_HTTP_DEADLINE_MS) > 0 ? Number(process.env.VMDN_HTTP_DEADLINE_MS) : 120_000;
    this.o = { retries: 5, backoffMs: 200, maxBackoffMs: 5000, verifyAttempts: 3, connections: 16, timeoutMs: 60_000, deadlineMs, minBytesPerSecond: 32 << 10, ...rest };
    this.batches = batches ?? true;
    const Agent = u.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: this.o.connections, keepAliveMsecs: 10_000 });
  }

  /** One HTTP exchange, no retries (http-exchange.ts). */
  private once(method: string, path: string, headers: http.OutgoingHttpHeaders, body: Uint8Array | undefined, maxBody: number, signal?: AbortSignal): Promise<Reply> {
    return exchangeOnce({ base: this.base, agent: this.agent, ...this.o }, method, path, headers, body, maxBody, signal);
  }

  /** A request with retries on connection failures and 5xx; 4xx answers become typed errors. */
  async request(method: string, path: string, opts: { headers?: http.OutgoingHttpHeaders; body?: Uint8Array; signal?: AbortSignal; auth?: boolean; maxBody?: number; returnBusy?: boolean } = {}): Promise<Reply> {
    const headers: http.OutgoingHttpHeaders = { ...opts.headers };
    // every request carries the token (it may open private images, issue 16); a caller's own header (an edge passing its client's) wins
    if (this.o.token && headers.authorization === undefined) headers.authorization = `Bearer ${this.o.token}`;
    if (opts.body) headers['content-length'] = opts.body.length;
    let last: unknown;
    let retryAfter = 0;
    for (let attempt = 0; attempt < this.o.retries; attempt++) {
      if (attempt > 0) {
        this.stats.retries++;
        const delay = Math.min(this.o.maxBackoffMs, Math.max(retryAfter, this.o.backoffMs * 2 ** (attempt - 1)));
        await sleep(delay / 2 + Math.random() * delay / 2, opts.signal);
      }
      opts.signal?.throwIfAborted();
      this.stats.requests++;
      try {
        const r = await this.once(method, path, headers, opts.body, opts.maxBody ?? MAX_JSON_BODY, opts.signal);
        // a busy server (503, Retry-After): the caller may rather take another way than wait
        if (r.status === 503 && opts.returnBusy) return r;
        if (r.status >= 500 && r.status !== 501) {
          retryAfter = r.status === 503 ? Math.min(60, Number(r.headers['retry-after']) || 0) * 1000 : 0;
          last = new Error(`HTTP ${r.status}${errorText(r)}`);
          continue;
        }
        if (r.status >= 400) throw remoteError(r, `${method} ${this.base}${path}`);
        return r;
      } catch (err) {
        if (err instanceof VmdnError || opts.signal?.aborted) throw err;
        last = err;
      }
    }
    const msg = (last as Error)?.message ?? String(last);
    throw new VmdnError('E_UNREACHABLE', `${this.base} unreachable after ${this.o.retries} attempts: ${msg}`, { url: this.base, attempts: this.o.retries }, { cause: last });
  }

  /** Fetch, decode and verify; a failing copy is refetched past caches, then reported naming the source. */
  fetchVerified(digest: Digest, opts: ReadOptions & { noCache?: boolean } = {}): Promise<{ encoded: Uint8Array; data: Uint8Array }> {
    return this.fetchAccepted(digest, (encoded) => ({ encoded, data: decodeObject(digest, encoded, this.base) }), opts);
  }

  /**
   * Fetch an object and hand the received bytes to `accept`, which must decode
   * and verify them (throwing E_CORRUPT_OBJECT for a bad copy) before it keeps
   * or uses them, e.g. in a codec worker. A bad copy is refetched past caches,
   * up to verifyAttempts times, then reported naming this source.
   */
  async fetchAccepted<T>(digest: Digest, accept: (encoded: Buffer) => T | Promise<T>, opts: ReadOptions & { noCache?: boolean } = {}): Promise<T> {
    let last: VmdnError | undefined;
    for (let attempt = 0; attempt < this.o.verifyAttempts; attempt++) {
      const headers = attempt > 0 || opts.noCache ? { 'cache-control': 'no-cache', pragma: 'no-cache' } : {};
      const r = await this.request('GET', objectUrlPath(digest), { headers, signal: opts.signal, maxBody: MAX_OBJECT_BODY });
      this.stats.objectsFetched++;
      this.stats.bytesFetched += r.body.length;
      try {
        return await accept(r.body);
      } catch (err) {
        if (!(err instanceof VmdnError) || err.code !== 'E_CORRUPT_OBJECT') throw err;
        this.stats.corrupt++;
        last = err;
      }
    }
    throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} from ${this.base} failed verification ${this.o.verifyAttempts} times: ${last?.message}`, { digest, source: this.base });
  }

  /**
   * One `POST /v1/objects/batch`: each record goes to `accept` as it arrives
   * (which verifies, as for fetchAccepted). No retries: what did not arrive
   * intact is returned for fetchAccepted, whose retries and errors apply.
   * Resolves undefined when the server has no batch endpoint.
   */
  fetchBatch(digests: Digest[], accept: (digest: Digest, encoded: Buffer) => Promise<unknown>, signal?: AbortSignal): Promise<BatchResult | undefined> {
    const each = (rs: BatchRecord[]) => Promise.all(rs.map((r) => accept(r.digest, r.encoded).then(() => undefined, (err: unknown) => err)));
    return this.fetchBatchGroups(digests, each, { signal, groupBytes: 0 });
  }

  /**
   * fetchBatch handing records over in groups of about `groupBytes` (what a
   * few socket reads brought), so the receiver pays its per-call cost (a
   * worker message) per group, not per object; a group's records are views of
   * one buffer of their own (batch-fetch.ts). `accept` resolves to one entry
   * per record: undefined when it was kept, else the error (E_CORRUPT_OBJECT:
   * refetched past caches; any other stops the batch).
   */
  async fetchBatchGroups(digests: Digest[], accept: (records: BatchRecord[]) => Promise<unknown[]>, o: BatchOptions): Promise<BatchResult | undefined> {
    if (!this.batches) return undefined;
    const host: BatchHost = { base: this.base, agent: this.agent, stats: this.stats, timeoutMs: this.o.timeoutMs, deadline: (req, moved) => armDeadline(req, moved, this.o) };
    const { status, missing, corrupt } = await exchangeBatch(host, digests, accept, o);
    if (status === 400 || status === 404 || status === 405 || status === 501) {
      this.batches = false;
      return undefined;
    }
    // the exchange failed (cut, timeout, refused), as opposed to the server lacking what is missing: peers.ts drops such a peer
    if (status !== 200) this.batchesFailed++;
    return { missing, corrupt };
  }

  async has(digest: Digest): Promise<boolean> {
    return (await this.stat(digest)) !== undefined;
  }

  async stat(digest: Digest): Promise<ObjectStat | undefined> {
    try {
      const r = await this.request('HEAD', objectUrlPath(digest));
      const stored = Number(r.headers['content-length'] ?? 0);
      // the uncompressed size is not on the wire without a GET; -1 says "unknown"
      return { digest, size: -1, storedSize: stored };
    } catch (err) {
      if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') return undefined;
      throw err;
    }
  }

  async get(digest: Digest, opts?: ReadOptions): Promise<Uint8Array> {
    return (await this.fetchVerified(digest, opts)).data;
  }

  async getEncoded(digest: Digest, opts?: ReadOptions): Promise<Uint8Array> {
    return (await this.fetchVerified(digest, opts)).encoded;
  }

  /** name:tag -> manifest digest. */
  async resolve(ref: ImageRef, signal?: AbortSignal, noCache = false): Promise<Digest> {
    try {
      const r = await this.request('GET', refPath(ref), { signal, maxBody: SMALL_BODY, headers: noCache ? { 'cache-control': 'no-cache', pragma: 'no-cache' } : {} });
      let body: { manifest?: unknown } | null = null;
      try {
        body = parseJson(r.body.toString('utf8')) as { manifest?: unknown } | null;
      } catch {
        /* reported below */
      }
      if (this.trust) return await this.trust.check(ref, body, this.base);
      const manifest = body?.manifest;
      if (!isDigest(manifest)) throw new VmdnError('E_MANIFEST', `${this.base} named ${formatImageRef(ref)} with no valid manifest digest`, { ref: formatImageRef(ref), url: this.base });
      return manifest;
    } catch (err) {
      // a cache on the way may hold a record older than one seen (the name just moved): ask past caches once
      if (!noCache && err instanceof VmdnError && err.code === 'E_UNTRUSTED' && /^(rollback|expired)$/.test(String(err.data.reason))) return this.resolve(ref, signal, true);
      if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') {
        throw new VmdnError('E_NOT_FOUND', `no image ${formatImageRef(ref)} at ${this.base}`, { ref: formatImageRef(ref), url: this.base });
      }
      throw err;
    }
  }

  /**
   * The boot profile the server names for a manifest, undefined if none (or
   * a server from before profiles: its 404 says the same). A malformed answer
   * is E_UNREACHABLE: not the server we expect.
   */
  async profile(manifest: Digest, signal?: AbortSignal): Promise<Digest | undefined> {
    let r: Reply;
    try {
      r = await this.request('GET', profilePath(manifest), { signal, maxBody: SMALL_BODY });
    } catch (err) {
      if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') return undefined;
      throw err;
    }
    let profile: unknown;
    try {
      profile = (parseJson(r.body.toString('utf8')) as { profile?: unknown } | null)?.profile;
    } catch {
      /* reported below */
    }
    if (!isDigest(profile)) throw new VmdnError('E_UNREACHABLE', `${this.base} answered the boot profile of ${manifest.slice(0, 12)} without a valid digest`, { url: this.base });
    return profile;
  }

  async listImages(): Promise<Array<Record<string, unknown>>> {
    const r = await this.request('GET', '/v1/images');
    let images: unknown;
    try {
      images = (parseJson(r.body.toString('utf8')) as { images?: unknown } | null)?.images;
    } catch {
      /* reported below */
    }
    if (!Array.isArray(images)) throw new VmdnError('E_UNREACHABLE', `${this.base} answered the image list with something else`, { url: this.base });
    return images as Array<Record<string, unknown>>;
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}
