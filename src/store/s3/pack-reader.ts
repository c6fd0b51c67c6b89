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
  /** Ranged reads under way, by every object they cover: a reader of any of them waits for it. */
  private inflight = new Map<Digest, Promise<Map<Digest, Uint8Array>>>();

  constructor(private readonly s3: S3, private readonly index: PackIndex, private readonly opts = { readAhead: 2 << 20, runs: 4, cacheBytes: 128 << 20 }) {}

  async read(d: Digest, at: Located, signal?: AbortSignal): Promise<Uint8Array> {
    const hit = this.cache.get(d);
    if (hit) {
      this.cache.delete(d);
      this.cache.set(d, hit); // LRU: most recent last
      this.extend(at);
      return hit;
    }
    const wait = this.inflight.get(d);
    const got = wait && (await wait).get(d);
    return got ?? (await this.fetch(d, at, signal)).get(d)!;
  }

  /**
   * The objects from `at` on, in runs of up to readAhead bytes, `runs` of
   * them fetched at once (the first holds `d`): a reader going through an
   * image in order finds the next objects arriving while it uses these.
   */
  private async fetch(d: Digest, at: Located, signal?: AbortSignal): Promise<Map<Digest, Uint8Array>> {
    const pack = this.index.packs.get(at.pack);
    const after = (pack?.entries ?? []).filter((e) => e.offset > at.offset).sort((a, b) => a.offset - b.offset);
    const runs: Located[][] = [[at]];
    let end = at.offset + at.stored;
    for (const e of after) {
      if (this.cache.has(e.digest) || this.inflight.has(e.digest)) break;
      let run = runs[runs.length - 1]!;
      if (e.offset !== end) break;
      if (end + e.stored - run[0]!.offset > this.opts.readAhead) {
        if (runs.length >= this.opts.runs) break;
        runs.push((run = []));
      }
      run.push({ ...e, pack: at.pack });
      end += e.stored;
    }
    const ps = runs.map((run, i) => this.fetchRun(run, i === 0 ? d : undefined, signal));
    for (const p of ps.slice(1)) p.catch(() => {}); // a read-ahead failing is the reader's business only when it needs it
    return ps[0]!;
  }

  /**
   * A reader moving through read-ahead objects: keep `runs` ranges ahead of
   * it in flight, so the next objects arrive while it uses these (without
   * this, reads would stall at the end of every batch of runs).
   */
  private extend(at: Located): void {
    const entries = this.index.packs.get(at.pack)?.entries;
    if (!entries) return;
    let i = entries.findIndex((e) => e.offset === at.offset);
    if (i < 0) return;
    const horizon = at.offset + this.opts.readAhead * this.opts.runs;
    while (++i < entries.length && entries[i]!.offset < horizon && (this.cache.has(entries[i]!.digest) || this.inflight.has(entries[i]!.digest)));
    if (i >= entries.length || entries[i]!.offset >= horizon) return;
    const run: Located[] = [];
    let end = entries[i]!.offset;
    for (; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.offset !== end || this.cache.has(e.digest) || this.inflight.has(e.digest)) break;
      if (run.length && end + e.stored - run[0]!.offset > this.opts.readAhead) break;
      run.push({ ...e, pack: at.pack });
      end += e.stored;
    }
    if (run.length) this.fetchRun(run, undefined).catch(() => {});
  }

  private async fetchRun(run: Located[], wanted: Digest | undefined, signal?: AbortSignal): Promise<Map<Digest, Uint8Array>> {
    const first = run[0]!;
    const last = run[run.length - 1]!;
    const length = last.offset + last.stored - first.offset;
    const p = this.s3.get(packKey(first.pack), { start: first.offset, length }, signal).then((r) => {
      if (!r) throw new VmdnError('E_NOT_FOUND', `object ${first.digest.slice(0, 12)}: its pack ${first.pack.slice(0, 12)} is gone`, { digest: first.digest });
      const slices = new Map(run.map((e) => [e.digest, r.body.subarray(e.offset - first.offset, e.offset - first.offset + e.stored)]));
      for (const [k, v] of slices) if (k !== wanted) this.keep(k, v);
      return slices;
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
