/**
 * An origin with peers in front (docs/p2p.md) as the upstream of a
 * CachingStore: what a lazy reader (`vmdn nbd --from`) fetches, singly or in
 * batches, is asked of its owner peer first and of the origin when the peer
 * does not bring it intact. Everything else (names, manifests through get,
 * HEAD) goes to the origin. Verification stays with the CachingStore's
 * accept, as for any upstream.
 */
import type { Digest } from '../../store/digest.js';
import type { ObjectStat, ReadOptions } from '../../store/types.js';
import type { BatchResult, FetchOptions, VerifyingUpstream } from '../../store/cache/caching-store.js';
import { decodeObject } from '../../store/codec.js';
import type { HttpStore } from './http-store.js';
import type { Peers } from './peers.js';

/** A lazy read's batch is small; the pull's 256 would hold a guest's read behind many objects. */
const BATCH = 64;
const GROUP_BYTES = 1 << 20;

export class PeeredUpstream implements VerifyingUpstream {
  readonly base: string;

  constructor(private readonly origin: HttpStore, readonly peers: Peers) {
    this.base = origin.base;
  }

  has(d: Digest): Promise<boolean> {
    return this.origin.has(d);
  }

  stat(d: Digest): Promise<ObjectStat | undefined> {
    return this.origin.stat(d);
  }

  async get(d: Digest, opts?: ReadOptions): Promise<Uint8Array> {
    return (await this.fetchVerified(d, opts)).data;
  }

  async getEncoded(d: Digest, opts?: ReadOptions): Promise<Uint8Array> {
    return (await this.fetchVerified(d, opts)).encoded;
  }

  fetchVerified(d: Digest, opts: FetchOptions = {}): Promise<{ encoded: Uint8Array; data: Uint8Array }> {
    return this.fetchAccepted(d, async (encoded) => ({ encoded, data: decodeObject(d, encoded, this.base) }), opts);
  }

  async fetchAccepted<T>(d: Digest, accept: (encoded: Buffer) => Promise<T>, opts: FetchOptions = {}): Promise<T> {
    // a refetch past caches (a bad copy seen) goes to the source of truth
    if (!opts.noCache) {
      const got = await this.peers.fetchOne(d, accept, opts.signal);
      if (got) return got.value;
    }
    return this.origin.fetchAccepted(d, accept, opts);
  }

  async fetchBatch(digests: Digest[], accept: (digest: Digest, encoded: Buffer) => Promise<unknown>): Promise<BatchResult | undefined> {
    const keep = () => (records: Array<{ digest: Digest; encoded: Buffer }>) =>
      Promise.all(records.map((r) => accept(r.digest, r.encoded).then(() => undefined, (err: unknown) => err)));
    const left = await this.peers.fetch(digests, keep, { batchSize: BATCH, lanes: 1, groupBytes: GROUP_BYTES });
    if (!left.length) return { missing: [], corrupt: [] };
    // undefined (no batches at the origin): the caller fetches what is still waiting one by one
    return this.origin.fetchBatch(left, accept);
  }

  async close(): Promise<void> {
    await this.peers.close();
    await this.origin.close();
  }
}
