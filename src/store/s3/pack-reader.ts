/**
 * Reads objects out of packs by ranged GET. A miss reads ahead over the
 * objects that follow in the same pack (an image's objects were packed in
 * the order it was imported, so an export or pull reads them next) and keeps
 * them in a bounded in-memory cache; concurrent readers of one range share
 * one GET. Nothing here is trusted: callers decode and verify by hash.
 */
import type { Digest } from '../digest.js';
import type { S3 } from './client.js';
import { packKey, type Located, type PackIndex } from './pack-index.js';
import { VmdnError } from '../../errors.js';

export class PackReader {
  private cache = new Map<Digest, Uint8Array>();
  private cached = 0;
  private inflight = new Map<Digest, Promise<Uint8Array | undefined>>();

  constructor(private readonly s3: S3, private readonly index: PackIndex, private readonly opts = { readAhead: 4 << 20, cacheBytes: 128 << 20 }) {}

  async read(d: Digest, at: Located, signal?: AbortSignal): Promise<Uint8Array> {
    const hit = this.cache.get(d);
    if (hit) {
      this.cache.delete(d);
      this.cache.set(d, hit); // LRU: most recent last
      return hit;
    }
    const wait = this.inflight.get(d);
    if (wait) {
      const got = await wait;
      if (got) return got;
    }
    return (await this.fetch(d, at, signal))!;
  }

  private async fetch(d: Digest, at: Located, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    const pack = this.index.packs.get(at.pack);
    // the run of objects from `at` on, up to readAhead bytes, that nobody is reading yet
    const run = [at];
    if (pack) {
      const after = pack.entries.filter((e) => e.offset > at.offset).sort((a, b) => a.offset - b.offset);
      let end = at.offset + at.stored;
      for (const e of after) {
        if (e.offset !== end || end + e.stored - at.offset > this.opts.readAhead) break;
        if (this.cache.has(e.digest) || this.inflight.has(e.digest)) break;
        run.push({ ...e, pack: at.pack });
        end += e.stored;
      }
    }
    const last = run[run.length - 1]!;
    const length = last.offset + last.stored - at.offset;
    const p = this.s3.get(packKey(at.pack), { start: at.offset, length }, signal).then((r) => {
      if (!r) throw new VmdnError('E_NOT_FOUND', `object ${d.slice(0, 12)}: its pack ${at.pack.slice(0, 12)} is gone`, { digest: d });
      const slices = new Map(run.map((e) => [e.digest, r.body.subarray(e.offset - at.offset, e.offset - at.offset + e.stored)]));
      for (const [k, v] of slices) if (k !== d) this.keep(k, v);
      return slices.get(d);
    });
    for (const e of run) this.inflight.set(e.digest, p);
    try {
      return await p;
    } finally {
      for (const e of run) if (this.inflight.get(e.digest) === p) this.inflight.delete(e.digest);
    }
  }

  private keep(d: Digest, v: Uint8Array): void {
    if (this.cache.has(d)) return;
    // a copy: the slice would pin the whole ranged read
    this.cache.set(d, Uint8Array.from(v));
    this.cached += v.length;
    for (const [k, b] of this.cache) {
      if (this.cached <= this.opts.cacheBytes) break;
      this.cache.delete(k);
      this.cached -= b.length;
    }
  }

  drop(d: Digest): void {
    const b = this.cache.get(d);
    if (b) { this.cache.delete(d); this.cached -= b.length; }
  }
}
