/**
 * The store a lazily served image reads its chunks through: a CachingStore in
 * front of the origin (each object verified, kept in the local cache, one
 * fetch per object however many readers wait for it), with the guest's
 * misses counted and visible to the background fill, which waits while any
 * is on its way (the guest is waiting; the fill is not).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { CachingStore } from '../store/cache/caching-store.js';
import type { Digest } from '../store/digest.js';
import type { ObjectStat, ReadableStore, ReadOptions } from '../store/types.js';

export interface LazyCounters {
  /** Objects the image needs (chunks), and how many of them the cache holds now. */
  objects: number;
  cachedObjects: number;
  /** Objects a guest read waited for (not in the cache when asked), and their encoded bytes. */
  demandObjects: number;
  demandBytes: number;
  /** Objects the background fill brought (none a guest had asked for first). */
  prefilledObjects: number;
  prefilledBytes: number;
  /** Fetches that failed (origin unreachable, corrupt past every retry): their reads answered EIO. */
  demandErrors: number;
  fillErrors: number;
  /** Every object is in the cache and the image is named there. */
  fillDone: boolean;
  /** Objects in the boot profile the fill follows first (0: none, or refused). */
  profileObjects: number;
  /** Of those, how many the fill fetched (the rest were cached already, or a guest asked first). */
  profilePrefetched: number;
  /**
   * Objects a guest read first found in the cache because the fill had
   * brought them from the profile: the prefetch paid off. Set against
   * demandObjects (the reads that had to wait): a profile that does not
   * match what the guest reads shows as few hits and many demand objects.
   */
  profileHits: number;
}

export function newCounters(objects: number, cachedObjects: number): LazyCounters {
  return { objects, cachedObjects, demandObjects: 0, demandBytes: 0, prefilledObjects: 0, prefilledBytes: 0, demandErrors: 0, fillErrors: 0, fillDone: false, profileObjects: 0, profilePrefetched: 0, profileHits: 0 };
}

export class DemandStore implements ReadableStore {
  private inflight = 0;
  private idleWaiters: Array<() => void> = [];
  /** Objects fetched because a guest asked (the fill does not count them again). */
  readonly demanded = new Set<Digest>();
  /** Profile objects the fill is bringing or brought and no guest has read yet (a first read of one, once cached, is a profile hit). */
  readonly profileFilled = new Set<Digest>();

  /** When a guest last read anything (cached or not), performance.now() ms. */
  private lastRead = 0;

  constructor(readonly store: CachingStore, readonly counters: LazyCounters) {}

  /** Resolves once no guest has read anything for `quietMs`, or after `maxMs` at the latest. */
  async quiet(quietMs: number, maxMs: number, signal?: AbortSignal): Promise<void> {
    const until = performance.now() + maxMs;
    for (;;) {
      const now = performance.now();
      const wait = Math.min(this.lastRead + quietMs - now, until - now);
      if (wait <= 0) return;
      await sleep(wait, undefined, { signal });
    }
  }

  /** Resolves once no guest read waits on the origin. */
  idle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async get(digest: Digest, opts?: ReadOptions): Promise<Uint8Array> {
    this.lastRead = performance.now();
    if (this.store.cache.index.getObject(digest)) {
      if (this.profileFilled.delete(digest)) this.counters.profileHits++;
      return this.store.get(digest, opts);
    }
    this.inflight++;
    // a second reader of an object on its way joins that fetch (CachingStore coalesces): counted once
    const first = !this.demanded.has(digest);
    this.demanded.add(digest);
    // the guest waits for it, even if the fill asked first: not a profile hit
    this.profileFilled.delete(digest);
    try {
      const data = await this.store.get(digest, opts);
      if (first) {
        this.counters.demandObjects++;
        this.counters.demandBytes += this.store.cache.index.getObject(digest)?.storedSize ?? 0;
        this.counters.cachedObjects++;
      }
      return data;
    } catch (err) {
      if (first) {
        this.demanded.delete(digest);
        this.counters.demandErrors++;
      }
      throw err;
    } finally {
      if (--this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  holdsLocally(digest: Digest): boolean {
    return !!this.store.cache.index.getObject(digest);
  }

  /** get() for many: those in the cache in a few worker trips, the others (fetched on demand) one by one as get() does. */
  async getMany(digests: Digest[], opts?: ReadOptions): Promise<Array<Uint8Array | Error>> {
    this.lastRead = performance.now();
    const cached = digests.filter((d) => this.store.cache.index.getObject(d));
    for (const d of cached) if (this.profileFilled.delete(d)) this.counters.profileHits++;
    const got = new Map<Digest, Uint8Array | Error>();
    if (cached.length) (await this.store.getMany(cached, opts)).forEach((r, i) => got.set(cached[i]!, r));
    return Promise.all(digests.map((d) => got.get(d) ?? this.get(d, opts).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))))));
  }

  /**
   * Objects needed before any read can be served (a files image's metadata
   * build): fetched in batches, a few at once, and counted as demand (the
   * client waits on them).
   */
  async warm(digests: Digest[], batch = 64, lanes = 4): Promise<void> {
    const todo = digests.filter((d) => !this.store.cache.index.getObject(d));
    const groups: Digest[][] = [];
    for (let i = 0; i < todo.length; i += batch) groups.push(todo.slice(i, i + batch));
    const lane = async () => {
      for (let g = groups.shift(); g; g = groups.shift()) {
        const results = await Promise.allSettled([...this.store.fillMany(g)].map(async ([d, p]) => {
          await p;
          if (this.demanded.has(d)) return;
          this.demanded.add(d);
          this.counters.demandObjects++;
          this.counters.demandBytes += this.store.cache.index.getObject(d)?.storedSize ?? 0;
          this.counters.cachedObjects++;
        }));
        const failed = results.find((r) => r.status === 'rejected');
        if (failed) throw (failed as PromiseRejectedResult).reason;
      }
    };
    await Promise.all(Array.from({ length: lanes }, lane));
  }

  getEncoded(digest: Digest, opts?: ReadOptions): Promise<Uint8Array> {
    return this.store.getEncoded(digest, opts);
  }

  has(digest: Digest): Promise<boolean> {
    return this.store.has(digest);
  }

  stat(digest: Digest): Promise<ObjectStat | undefined> {
    return this.store.stat(digest);
  }

  /** The caching store and its cache belong to the caller. */
  async close(): Promise<void> {}
}
