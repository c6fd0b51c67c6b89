/**
 * A local store in front of a remote one: reads hit the local copy or go
 * upstream once (concurrent misses for one digest share one fetch), are
 * verified, and land in the local store by atomic rename, so an interrupted
 * pull keeps every finished object. With an eviction policy it is the edge's
 * size-bounded cache; without one it is a client's pull cache.
 */
import type { LocalStore } from '../store/local-store.js';
import { decodeObject } from '../store/codec.js';
import { writeAtomic } from '../store/codec-worker.js';
import type { Digest } from '../store/digest.js';
import type { ObjectStat, PutResult, ReadableStore, ReadOptions, WritableStore } from '../store/types.js';
import { VmdnError } from '../errors.js';
import type { EvictionPolicy } from './eviction.js';

export interface FetchOptions extends ReadOptions {
  /** Ask caches on the way to go back to their source (a copy failed verification). */
  noCache?: boolean;
}

/** An upstream that can hand back verified bytes in both forms (HttpStore); others are verified here. */
export interface VerifyingUpstream extends ReadableStore {
  fetchVerified?(digest: Digest, opts?: FetchOptions): Promise<{ encoded: Uint8Array; data: Uint8Array }>;
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
  data: Uint8Array;
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
    return (await this.fill(digest, opts)).data;
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

  private async fetchAndKeep(digest: Digest, opts: FetchOptions): Promise<Fetched> {
    let f: Fetched;
    if (this.upstream.fetchVerified) f = await this.upstream.fetchVerified(digest, opts);
    else {
      const encoded = await this.upstream.getEncoded(digest, opts);
      f = { encoded, data: decodeObject(digest, encoded, 'upstream') };
    }
    this.stats.objectsFromUpstream++;
    this.stats.bytesFromUpstream += f.encoded.length;
    if (this.cache.index.getObject(digest)) return f;
    const victims = this.policy?.insert(digest, f.encoded.length) ?? [];
    if (!victims.includes(digest)) {
      await writeAtomic(this.cache.objectPath(digest), this.cache.tmpDir, f.encoded);
      this.cache.index.addObject({ digest, size: f.data.length, storedSize: f.encoded.length });
    }
    await this.evict(victims.filter((v) => v !== digest));
    return f;
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
