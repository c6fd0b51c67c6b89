/**
 * An image store whose objects live far away (an S3 bucket) with a local,
 * size-bounded cache of the hot ones in front, evicted by the edge's policy
 * (eviction.ts): a store wrapping a store, as desync's cache does. Reads hit
 * the local copy or fetch from the store once (concurrent misses share the
 * fetch), verify by hash and keep; names, uploads and stats go straight to
 * the store, so origins sharing a bucket still share everything but their
 * caches. `vmdn serve --store s3://... --cache DIR --max-size SIZE`.
 *
 * A cached copy is verified each time it is served (decode + SHA-256, far
 * cheaper than the ranged GET it saves): a damaged file is dropped and the
 * object fetched again, never served.
 */
import { LocalStore } from '../local/local-store.js';
import { decodeObject } from '../codec.js';
import type { Digest } from '../digest.js';
import type { ImageStore, ObjectStat, PutResult, ReadOptions, StoreTotals } from '../types.js';
import { VmdnError } from '../../errors.js';
import { CachingStore } from './caching-store.js';
import { createPolicy, type PolicyName } from './eviction.js';

export interface HotCacheOptions {
  dir: string;
  maxBytes: number;
  policy: PolicyName;
}

type Inner = ImageStore & Partial<StoreTotals> & { flush?: () => Promise<void>; readonly url?: string };

export class HotCachedStore<S extends Inner = Inner> implements ImageStore, StoreTotals {
  private constructor(readonly store: S, readonly caching: CachingStore) {}

  /** Objects already in `dir` (a restarted origin) are registered with the policy and trimmed to the budget. */
  static async open<S extends Inner>(store: S, o: HotCacheOptions): Promise<HotCachedStore<S>> {
    // loose files, as the edge's cache: an eviction must free its bytes at once
    const cache = await LocalStore.open(o.dir, { loose: true });
    try {
      return new HotCachedStore(store, await CachingStore.open(cache, store, createPolicy(o.policy, o.maxBytes)));
    } catch (e) {
      await cache.close();
      throw e;
    }
  }

  /** Where the objects live (what serve prints). */
  get url(): string {
    return this.store.url ?? this.caching.cache.dir;
  }

  get names(): S['names'] {
    return this.store.names;
  }

  has(d: Digest): Promise<boolean> {
    return this.store.has(d);
  }

  stat(d: Digest): Promise<ObjectStat | undefined> {
    return this.store.stat(d);
  }

  statMany(digests: Iterable<Digest>): Promise<Map<Digest, ObjectStat>> {
    return this.store.statMany(digests);
  }

  /** LocalStore.get verifies a hit; CachingStore drops a bad one and fetches again. */
  get(d: Digest, opts?: ReadOptions): Promise<Uint8Array> {
    return this.caching.get(d, opts);
  }

  async getEncoded(d: Digest, opts: ReadOptions = {}): Promise<Uint8Array> {
    if (this.caching.lookup(d)) {
      try {
        const enc = await this.caching.cache.getEncoded(d, opts);
        decodeObject(d, enc, this.caching.cache.dir); // verified before it is served
        return enc;
      } catch (err) {
        if (!(err instanceof VmdnError) || (err.code !== 'E_CORRUPT_OBJECT' && err.code !== 'E_NOT_FOUND')) throw err;
        await this.caching.drop(d, err.code === 'E_CORRUPT_OBJECT');
      }
    }
    return (await this.caching.fill(d, opts)).encoded;
  }

  put(data: Uint8Array, opts?: { digest?: Digest } & ReadOptions): Promise<PutResult> {
    return this.store.put(data, opts);
  }

  putEncoded(digest: Digest, encoded: Uint8Array, opts?: ReadOptions): Promise<PutResult> {
    return this.store.putEncoded(digest, encoded, opts);
  }

  flush(): Promise<void> {
    return this.store.flush?.() ?? Promise.resolve();
  }

  /** The store's totals, and the cache's: hits, misses, bytes held against its budget. */
  async totals() {
    const p = this.caching.policy!;
    const inner = (await this.store.totals?.()) ?? { objects: 0, size: 0, stored: 0 };
    return { ...inner, cache: { ...this.caching.stats, policy: p.name, objects: p.size, bytes: p.bytes, maxBytes: p.capacity } };
  }

  /** Closes the cache and the store. */
  close(): Promise<void> {
    return this.caching.close();
  }
}
