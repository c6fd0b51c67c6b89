/**
 * A local store in front of a remote one: reads hit the local copy or go
 * upstream once (concurrent misses for one digest share one fetch), are
 * verified, and land in the local store (its pack, made durable before the
 * object is indexed), so an interrupted
 * pull keeps every finished object. With an eviction policy it is the edge's
 * size-bounded cache; without one it is a client's pull cache.
 */
import type { LocalStore } from '../local/local-store.js';
import { decodeObject } from '../codec.js';
import type { Digest } from '../digest.js';
import type { ObjectStat, PutResult, ReadableStore, ReadOptions, WritableStore } from '../types.js';
import { VmdnError } from '../../errors.js';
import type { EvictionPolicy } from './eviction.js';

export interface BatchResult {
  /** Not received intact (left out by the server, or the body was cut): fetch them one by one. */
  missing: Digest[];
  /** Received but failing verification: refetch past caches. */
  corrupt: Digest[];
}

export interface FetchOptions extends ReadOptions {
  /** Ask caches on the way to go back to their source (a copy failed verification). */
  noCache?: boolean;
}

/** An upstream that can hand back verified bytes in both forms, and answer batches (HttpStore); others are verified here. */
export interface VerifyingUpstream extends ReadableStore {
  readonly base?: string;
  fetchVerified?(digest: Digest, opts?: FetchOptions): Promise<{ encoded: Uint8Array; data: Uint8Array }>;
  fetchAccepted?<T>(digest: Digest, accept: (encoded: Buffer) => Promise<T>, opts?: FetchOptions): Promise<T>;
  fetchBatch?(digests: Digest[], accept: (digest: Digest, encoded: Buffer) => Promise<unknown>): Promise<BatchResult | undefined>;
}

export interface CacheStats {
  hits: number;
  misses: number;
  /** Misses that joined a fetch already in flight. */
  coalesced: number;
  objectsFromUpstream: number;
  bytesFromUpstream: number;
  evictions: number;
  bytesEvicted: number;
  /** Local copies found damaged (dropped, refetched). */
  localCorrupt: number;
}

interface Fetched {
  encoded: Uint8Array;
  /** Absent when a codec worker verified the bytes (the data stayed there); get() decodes them. */
  data?: Uint8Array;
}

export class CachingStore implements WritableStore {
  readonly stats: CacheStats = { hits: 0, misses: 0, coalesced: 0, objectsFromUpstream: 0, bytesFromUpstream: 0, evictions: 0, bytesEvicted: 0, localCorrupt: 0 };
  private readonly inflight = new Map<Digest, Promise<Fetched>>();

  private constructor(readonly cache: LocalStore, readonly upstream: VerifyingUpstream, readonly policy?: EvictionPolicy) {}

  /** With a policy, objects already in the cache are registered with it (oldest digest order) and trimmed to its budget. */
  static async open(cache: LocalStore, upstream: VerifyingUpstream, policy?: EvictionPolicy): Promise<CachingStore> {
    const s = new CachingStore(cache, upstream, policy);
    if (policy) for await (const o of cache.list()) await s.evict(policy.insert(o.digest, o.storedSize));
    return s;
  }

  /** A hit is counted and touches the policy; a miss is counted by the fetch that follows. */
  lookup(digest: Digest): ObjectStat | undefined {
    const st = this.cache.index.getObject(digest);
    if (st) {
      this.stats.hits++;
      this.policy?.touch(digest);
    }
    return st;
  }

  async has(digest: Digest): Promise<boolean> {
    return (await this.cache.has(digest)) || this.upstream.has(digest);
  }

  async stat(digest: Digest): Promise<ObjectStat | undefined> {
    return (await this.cache.stat(digest)) ?? this.upstream.stat(digest);
  }

  async get(digest: Digest, opts: ReadOptions = {}): Promise<Uint8Array> {
    if (this.lookup(digest)) {
      try {
        return await this.cache.get(digest, opts);
      } catch (err) {
        if (!(err instanceof VmdnError) || (err.code !== 'E_CORRUPT_OBJECT' && err.code !== 'E_NOT_FOUND')) throw err;
        await this.drop(digest, err.code === 'E_CORRUPT_OBJECT');
      }
    }
    const f = await this.fill(digest, opts);
    return f.data ?? decodeObject(digest, f.encoded, this.cache.dir);
  }

  /**
   * get() for many objects: the cached ones read in a few worker trips (getMany), each of the rest,
   * and each cached copy that turns out bad or missing, through get() (fetched and kept).
   */
  async getMany(digests: Digest[], opts: ReadOptions = {}): Promise<Array<Uint8Array | Error>> {
    const hits = digests.filter((d) => this.lookup(d));
    const got = new Map<Digest, Uint8Array | Error>();
    if (hits.length) (await this.cache.getMany(hits, opts)).forEach((r, i) => got.set(hits[i]!, r));
    return Promise.all(
      digests.map((d) => {
        const r = got.get(d);
        if (r !== undefined && !(r instanceof Error)) return r;
        if (r instanceof VmdnError && r.code !== 'E_CORRUPT_OBJECT' && r.code !== 'E_NOT_FOUND') return r;
        return this.get(d, opts).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
      }),
    );
  }

  async getEncoded(digest: Digest, opts: ReadOptions = {}): Promise<Uint8Array> {
    if (this.lookup(digest)) {
      try {
        return await this.cache.getEncoded(digest, opts);
      } catch (err) {
        if (!(err instanceof VmdnError) || err.code !== 'E_NOT_FOUND') throw err;
        await this.drop(digest, false);
      }
    }
    return (await this.fill(digest, opts)).encoded;
  }

  /** Fetch from upstream (once per digest at a time), verify, keep unless the policy declines. */
  fill(digest: Digest, opts: FetchOptions = {}): Promise<Fetched> {
    const running = this.inflight.get(digest);
    if (running) {
      this.stats.coalesced++;
      return running;
    }
    this.stats.misses++;
    const p = this.fetchAndKeep(digest, opts).finally(() => this.inflight.delete(digest));
    this.inflight.set(digest, p);
    return p;
  }

  /**
   * fill() for many objects: those neither cached nor on their way already
   * come in one upstream batch where the upstream answers batches (each
   * verified here before it is kept); whatever the batch did not bring
   * intact is fetched singly, bad copies past caches. Returns the pending
   * fill of every given digest that is not cached.
   */
  fillMany(digests: Digest[]): Map<Digest, Promise<Fetched>> {
    const out = new Map<Digest, Promise<Fetched>>();
    const waiting = new Map<Digest, { resolve: (f: Fetched) => void; reject: (e: unknown) => void }>();
    for (const d of digests) {
      if (out.has(d) || waiting.has(d)) continue;
      const running = this.inflight.get(d);
      if (running) {
        this.stats.coalesced++;
        out.set(d, running);
        continue;
      }
      if (this.cache.index.getObject(d)) continue;
      this.stats.misses++;
      const p = new Promise<Fetched>((resolve, reject) => waiting.set(d, { resolve, reject })).finally(() => this.inflight.delete(d));
      p.catch(() => {}); // the caller may stop listening (client gone); the fill still completes
      this.inflight.set(d, p);
      out.set(d, p);
    }
    if (waiting.size) void this.batchFill(waiting);
    return out;
  }

  private async batchFill(waiting: Map<Digest, { resolve: (f: Fetched) => void; reject: (e: unknown) => void }>): Promise<void> {
    const source = this.upstream.base ?? 'upstream';
    let r: BatchResult | undefined;
    try {
      r = await this.upstream.fetchBatch?.([...waiting.keys()], async (d, encoded) => {
        const f = this.cache.canCopyTo ? await this.keepVerifying(d, encoded) : await this.keep(d, { encoded, data: decodeObject(d, encoded, source) });
        waiting.get(d)!.resolve(f);
        waiting.delete(d);
      });
    } catch (err) {
      for (const w of waiting.values()) w.reject(err);
      return;
    }
    const corrupt = new Set(r?.corrupt);
    await Promise.all([...waiting].map(([d, w]) => this.fetchAndKeep(d, { noCache: corrupt.has(d) }).then(w.resolve, w.reject)));
  }

  private async fetchAndKeep(digest: Digest, opts: FetchOptions): Promise<Fetched> {
    // with codec workers, decoding, hashing and the write happen there; this thread only speaks HTTP
    if (this.cache.canCopyTo && this.upstream.fetchAccepted) return this.upstream.fetchAccepted(digest, (encoded) => this.keepVerifying(digest, encoded), opts);
    let f: Fetched;
    if (this.upstream.fetchVerified) f = await this.upstream.fetchVerified(digest, opts);
    else {
      const encoded = await this.upstream.getEncoded(digest, opts);
      f = { encoded, data: decodeObject(digest, encoded, 'upstream') };
    }
    return this.keep(digest, f);
  }

  /** Count a verified object from upstream and keep it unless the policy declines. */
  private async keep(digest: Digest, f: Fetched): Promise<Fetched> {
    this.stats.objectsFromUpstream++;
    this.stats.bytesFromUpstream += f.encoded.length;
    if (this.cache.index.getObject(digest)) return f;
    const victims = this.policy?.insert(digest, f.encoded.length) ?? [];
    if (!victims.includes(digest)) {
      await this.cache.keep(digest, f.encoded, f.data!.length);
      // another fill's insert evicted it while it was being written (its delete found no file yet):
      // kept now, it would sit on disk uncounted by the policy and the cache would outgrow its budget
      if (this.policy && !this.policy.has(digest)) await this.cache.delete(digest);
    }
    await this.evict(victims.filter((v) => v !== digest));
    return f;
  }

  /** keep() for bytes not verified yet: a codec worker checks and writes them (E_CORRUPT_OBJECT: nothing kept). */
  private async keepVerifying(digest: Digest, encoded: Uint8Array): Promise<Fetched> {
    const known = this.cache.index.getObject(digest) !== undefined;
    // a copy: acceptEncoded moves its bytes to the worker, and these are served
    await this.cache.acceptEncoded(digest, new Uint8Array(encoded), { source: this.upstream.base ?? 'upstream' });
    this.stats.objectsFromUpstream++;
    this.stats.bytesFromUpstream += encoded.length;
    if (!known) {
      const victims = this.policy?.insert(digest, encoded.length) ?? [];
      // a newcomer the policy declines was written only to be verified
      if (victims.includes(digest)) await this.cache.delete(digest);
      await this.evict(victims.filter((v) => v !== digest));
    }
    return { encoded };
  }

  /** Remove a local copy (evicted by the caller, found damaged, or vanished). */
  async drop(digest: Digest, corrupt: boolean): Promise<void> {
    if (corrupt) this.stats.localCorrupt++;
    this.policy?.remove(digest);
    await this.cache.delete(digest);
  }

  private async evict(keys: Digest[]): Promise<void> {
    for (const k of keys) {
      const st = this.cache.index.getObject(k);
      this.stats.evictions++;
      this.stats.bytesEvicted += st?.storedSize ?? 0;
      await this.cache.delete(k);
    }
  }

  async put(data: Uint8Array, opts?: { digest?: Digest } & ReadOptions): Promise<PutResult> {
    const r = await this.cache.put(data, opts);
    if (r.added) await this.evict(this.policy?.insert(r.digest, r.storedSize) ?? []);
    return r;
  }

  async putEncoded(digest: Digest, encoded: Uint8Array): Promise<PutResult> {
    const r = await this.cache.putEncoded(digest, encoded);
    if (r.added) await this.evict(this.policy?.insert(r.digest, r.storedSize) ?? []);
    return r;
  }

  async close(): Promise<void> {
    await this.upstream.close();
    await this.cache.close();
  }
}
