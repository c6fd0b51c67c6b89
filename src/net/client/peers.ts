/**
 * Peers of a pull (docs/p2p.md): other sites' vmdn servers (an edge over the
 * origin, or `vmdn serve` over a pull cache) asked for objects before the
 * origin. The peer protocol is the object API every vmdn server speaks
 * (batches, then single GETs); every object is verified by the receiver like
 * one from the origin, so a peer can waste a request, never corrupt an image.
 *
 * Objects are spread over the peers by rendezvous (highest random weight)
 * hashing of the digest: every site with the same peer list asks the same
 * peer for an object, so when the peers are edges over the origin each
 * object leaves the origin once (through its owner edge) whatever the number
 * of sites, and removing a peer moves only the objects it owned.
 *
 * A peer is advertised per image, not per object: it is used for a pull when
 * it answers for the image's manifest object (an edge fetches it through;
 * a served pull cache holds it once a pull of that image began). What a peer
 * did not bring intact (absent, cut, timed out, corrupt) comes from the origin.
 * A peer that sent a corrupt object, or whose connection failed, is dropped
 * for the rest of the pull.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Digest } from '../../store/digest.js';
import { objectUrlPath } from '../wire/http-api.js';
import { VmdnError } from '../../errors.js';
import { HttpStore, type BatchRecord } from './http-store.js';

/** Per-peer figures of one pull (in `vmdn pull --json`). */
export interface PeerStats {
  url: string;
  /** False when it did not hold the image (manifest probe) or was dropped after a failure. */
  used: boolean;
  objects: number;
  bytes: number;
  /** Requests that failed (connection, timeout, HTTP error, cut body). */
  failures: number;
  /** Objects that failed verification. */
  corrupt: number;
  /** Objects asked of it that came from the origin instead. */
  fellBack: number;
}

/** A peer's fixed weight seed: the first 32 bits of the SHA-256 of its URL (the same on every site). */
export function peerSeed(url: string): number {
  return createHash('sha256').update(normalizePeerUrl(url)).digest().readUInt32BE(0);
}

export function normalizePeerUrl(url: string): string {
  return url.trim().replace(/\/+$/, '');
}

/** A digest's weight at a peer: a 32-bit mix (murmur3's finalizer) of the peer's seed and the digest's first 64 bits. */
export function weight(seed: number, digest: Digest): number {
  const h1 = parseInt(digest.slice(0, 8), 16);
  const h2 = parseInt(digest.slice(8, 16), 16);
  let x = Math.imul(h1 ^ seed, 0x9e3779b1) ^ h2;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Index of the peer (given by seeds) that owns `digest`: highest weight, ties to the lower seed. */
export function owner(seeds: readonly number[], digest: Digest): number {
  let best = -1;
  let bestW = -1;
  for (let i = 0; i < seeds.length; i++) {
    const w = weight(seeds[i]!, digest);
    if (w > bestW || (w === bestW && seeds[i]! < seeds[best]!)) {
      best = i;
      bestW = w;
    }
  }
  return best;
}

/** `--peers FILE`: one URL per line; blank lines and lines starting with # are skipped. */
export function readPeerFile(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new VmdnError('E_USAGE', `cannot read peer list ${file}: ${(err as Error).message}`);
  }
  return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
}

/** Local failures (disk, index, abort) stop the pull; anything else is the peer's and sends its objects to the origin. */
function isLocal(err: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return true;
  return err instanceof VmdnError && (err.code === 'E_IO' || err.code === 'E_STORE' || err.code === 'E_ABORTED' || err.code === 'E_INTERNAL');
}

/** Peer batches in flight at most, whatever the number of peers. */
const MAX_LANES = 8;
/** Failed exchanges in a row after which a peer is dropped for the rest of the pull. */
const MAX_FAILURES = 3;
/** Pause before asking a peer again, times its failures in a row. */
const RETRY_PAUSE_MS = 500;


interface Peer {
  store: HttpStore;
  seed: number;
  stats: PeerStats;
  /** Failed exchanges since its last good one (MAX_FAILURES drops it). */
  failuresInARow: number;
}

export interface PeerOptions {
  /** Idle timeout of a peer request (default 20 s, against the origin's 60 s: an edge of a busy site may take a while to answer, a stalled one should not hold a pull for long). */
  timeoutMs?: number;
  /** Keep-alive connections per peer. */
  connections?: number;
}

export class Peers {
  private readonly peers: Peer[];

  constructor(urls: string[], o: PeerOptions = {}) {
    const seen = new Set<string>();
    this.peers = [];
    for (const raw of urls) {
      const url = normalizePeerUrl(raw);
      if (seen.has(url)) continue;
      seen.add(url);
      // one attempt: the origin is the retry; no token: the origin's credentials are not for other sites
      // a peer slower than 128 KiB/s per request (after 60 s) is dropped: the origin is the better source then
      const store = new HttpStore(url, { retries: 1, verifyAttempts: 1, timeoutMs: o.timeoutMs ?? 20_000, deadlineMs: 60_000, minBytesPerSecond: 128 << 10, connections: o.connections ?? 4 });
      this.peers.push({ store, seed: peerSeed(url), failuresInARow: 0, stats: { url: store.base, used: true, objects: 0, bytes: 0, failures: 0, corrupt: 0, fellBack: 0 } });
    }
  }

  get size(): number {
    return this.peers.length;
  }

  stats(): PeerStats[] {
    return this.peers.map((p) => ({ ...p.stats }));
  }

  /** Keep the peers that hold the image (HEAD of its manifest object); the others sit this pull out. */
  async probe(manifest: Digest, signal?: AbortSignal): Promise<void> {
    await Promise.all(this.peers.map(async (p) => {
      try {
        await p.store.request('HEAD', objectUrlPath(manifest), { signal });
      } catch (err) {
        if (signal?.aborted) throw err;
        if (!(err instanceof VmdnError && err.code === 'E_NOT_FOUND')) p.stats.failures++;
        p.stats.used = false;
      }
    }));
  }

  /** The objects each live peer owns (rendezvous over the live peers only). */
  assign(digests: Iterable<Digest>): Map<number, Digest[]> {
    const live = this.peers.map((p, i) => ({ p, i })).filter((x) => x.p.stats.used);
    const seeds = live.map((x) => x.p.seed);
    const out = new Map<number, Digest[]>();
    if (!live.length) return out;
    for (const d of digests) {
      const i = live[owner(seeds, d)]!.i;
      const list = out.get(i);
      if (list) list.push(d);
      else out.set(i, [d]);
    }
    return out;
  }

  /**
   * Fetch `digests` from their owner peers in batches of `batchSize`;
   * `keep(source)` verifies and keeps a group of records (pull-objects.ts).
   * Batches go round-robin over the peers with `lanes` in flight, more with
   * more peers (2 per peer, up to MAX_LANES: each may hold 16 MiB of received
   * bytes awaiting the codec workers). A batch whose exchange failed (refused,
   * cut, timed out) is asked again of the same peer after a pause, up to
   * MAX_FAILURES failures in a row; then the peer is dropped and what it still
   * owned goes to the next owner among the live peers (the same one on every
   * site with the same list), not to the origin: an overloaded edge is the
   * common case in a swarm, and the origin would pay for each of its batches
   * once per site. A corrupt object drops its peer at once. Resolves to what
   * must come from the origin: what no live peer has.
   */
  async fetch(digests: Digest[], keep: (source: string) => (records: BatchRecord[]) => Promise<unknown[]>, o: { batchSize: number; lanes: number; groupBytes: number; signal?: AbortSignal }): Promise<Digest[]> {
    const left: Digest[] = [];
    const queue: Array<{ p: Peer; b: Digest[] }> = [];
    /** Jobs for `ds`, round-robin over their owners among the live peers; false when no peer is left. */
    const plan = (ds: Digest[]): boolean => {
      const perPeer = [...this.assign(ds)].map(([i, own]) => {
        const batches: Digest[][] = [];
        for (let k = 0; k < own.length; k += o.batchSize) batches.push(own.slice(k, k + o.batchSize));
        return { p: this.peers[i]!, batches };
      });
      for (let k = 0; perPeer.some((x) => k < x.batches.length); k++) for (const x of perPeer) if (k < x.batches.length) queue.push({ p: x.p, b: x.batches[k]! });
      return perPeer.length > 0;
    };
    plan(digests);
    const live = new Set(this.peers.filter((p) => p.stats.used));
    let busy = 0;
    const lane = async () => {
      for (;;) {
        const job = queue.shift();
        if (!job) {
          // a batch in flight elsewhere may still fail and come back to the queue
          if (busy === 0) return;
          await sleep(20, undefined, { signal: o.signal });
          continue;
        }
        busy++;
        try {
          const { p, b } = job;
          if (!p.stats.used) {
            if (!plan(b)) left.push(...b);
            continue;
          }
          const r = await this.batch(p, b, keep(p.store.base), o);
          if (r.failed && p.stats.used) {
            // the same peer again, after a pause that grows with its failures in a row
            await sleep(RETRY_PAUSE_MS * p.failuresInARow, undefined, { signal: o.signal });
            queue.push({ p, b: r.rest });
          } else if (r.failed) {
            p.stats.fellBack += r.rest.length;
            if (!plan(r.rest)) left.push(...r.rest);
          } else {
            p.stats.fellBack += r.rest.length;
            left.push(...r.rest);
          }
        } finally {
          busy--;
        }
      }
    };
    const width = Math.max(1, Math.min(digests.length, Math.max(o.lanes, Math.min(MAX_LANES, 2 * live.size))));
    await Promise.all(Array.from({ length: width }, lane));
    return left;
  }

  /** A failed exchange with `p`: counted; the peer is dropped after MAX_FAILURES in a row. */
  private failed(p: Peer): void {
    p.stats.failures++;
    p.failuresInARow++;
    if (p.failuresInARow >= MAX_FAILURES) p.stats.used = false;
  }

  /**
   * One batch from one peer (single GETs if it has no batch endpoint): what it
   * did not bring intact, and whether the exchange failed (to be asked again)
   * rather than the peer lacking objects or lying about them (origin).
   */
  private async batch(p: Peer, ds: Digest[], keepRaw: (records: BatchRecord[]) => Promise<unknown[]>, o: { groupBytes: number; signal?: AbortSignal }): Promise<{ rest: Digest[]; failed: boolean }> {
    // the peer's figures are what it delivered intact
    const kept = new Set<Digest>();
    const keep = async (records: BatchRecord[]) => {
      // sizes first: keeping may move the buffers to a codec worker
      const sizes = records.map((r) => r.encoded.length);
      const errs = await keepRaw(records);
      records.forEach((r, i) => {
        if (errs[i] !== undefined) return;
        kept.add(r.digest);
        p.stats.objects++;
        p.stats.bytes += sizes[i]!;
      });
      return errs;
    };
    try {
      const failedBefore = p.store.batchesFailed;
      const r = await p.store.fetchBatchGroups(ds, keep, { signal: o.signal, groupBytes: o.groupBytes });
      if (!r) return { rest: await this.singles(p, ds, keep, o.signal), failed: false };
      if (r.corrupt.length) {
        p.stats.corrupt += r.corrupt.length;
        p.stats.used = false;
        return { rest: [...r.missing, ...r.corrupt], failed: false };
      }
      // this batch's exchange failed (or another one's to the same peer meanwhile)
      if (p.store.batchesFailed > failedBefore) {
        this.failed(p);
        return { rest: r.missing, failed: true };
      }
      p.failuresInARow = 0;
      return { rest: r.missing, failed: false };
    } catch (err) {
      if (isLocal(err, o.signal)) throw err;
      this.failed(p);
      return { rest: ds.filter((d) => !kept.has(d)), failed: true };
    }
  }

  /**
   * One object from its owner peer (a lazy read, nbd --from); undefined when
   * the origin must bring it. `accept` verifies and keeps, as for fetch.
   */
  async fetchOne<T>(d: Digest, accept: (encoded: Buffer) => Promise<T>, signal?: AbortSignal): Promise<{ value: T } | undefined> {
    const [entry] = this.assign([d]);
    if (!entry) return undefined;
    const p = this.peers[entry[0]]!;
    try {
      const value = await p.store.fetchAccepted(d, async (encoded) => {
        const n = encoded.length;
        const v = await accept(encoded);
        p.stats.objects++;
        p.stats.bytes += n;
        return v;
      }, { signal });
      return { value };
    } catch (err) {
      if (isLocal(err, signal)) throw err;
      p.stats.fellBack++;
      if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') return undefined;
      if (err instanceof VmdnError && err.code === 'E_CORRUPT_OBJECT') {
        p.stats.corrupt++;
        p.stats.used = false;
      } else this.failed(p);
      return undefined;
    }
  }

  private async singles(p: Peer, ds: Digest[], keep: (records: BatchRecord[]) => Promise<unknown[]>, signal?: AbortSignal): Promise<Digest[]> {
    const rest: Digest[] = [];
    for (const d of ds) {
      if (!p.stats.used) {
        rest.push(d);
        continue;
      }
      try {
        await p.store.fetchAccepted(d, async (encoded) => {
          const [err] = await keep([{ digest: d, encoded }]);
          if (err) throw err;
        }, { signal });
      } catch (err) {
        if (isLocal(err, signal)) throw err;
        rest.push(d);
        if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') continue;
        if (err instanceof VmdnError && err.code === 'E_CORRUPT_OBJECT') {
          p.stats.corrupt++;
          p.stats.used = false;
        } else this.failed(p);
      }
    }
    return rest;
  }

  async close(): Promise<void> {
    await Promise.all(this.peers.map((p) => p.store.close()));
  }
}
