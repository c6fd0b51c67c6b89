/**
 * Peers of a pull (docs/p2p.md): other sites' vmdn servers (an edge over the
 * origin, or `vmdn serve` over a pull cache) asked for objects before the
 * origin. The peer protocol is the object API every vmdn server speaks
 * (batches, then single GETs); one peer's exchanges and its health are in
 * peer-exchange.ts.
 *
 * Objects are spread over the peers by rendezvous hashing of the digest
 * (peer-rendezvous.ts): every site with the same peer list asks the same peer
 * for an object.
 *
 * A peer is advertised per image, not per object: it is used for a pull when
 * it answers for the image's manifest object (an edge fetches it through;
 * a served pull cache holds it once a pull of that image began). What a peer
 * did not bring intact (absent, cut, timed out, corrupt) comes from the origin.
 * A peer that sent a corrupt object, or whose connection failed, is dropped
 * for the rest of the pull.
 */
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Digest } from '../../store/digest.js';
import { objectUrlPath } from '../wire/http-api.js';
import { VmdnError } from '../../errors.js';
import type { BatchRecord } from './http-store.js';
import { normalizePeerUrl, owner } from './peer-rendezvous.js';
import { openPeer, peerBatch, peerOne, type Peer, type PeerOptions, type PeerStats } from './peer-exchange.js';

export { normalizePeerUrl, owner, peerSeed, weight } from './peer-rendezvous.js';
export type { PeerOptions, PeerStats } from './peer-exchange.js';

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

/** Peer batches in flight at most, whatever the number of peers. */
const MAX_LANES = 8;
/** Pause before asking a peer again, times its failures in a row. */
const RETRY_PAUSE_MS = 500;

export class Peers {
  private readonly peers: Peer[];

  constructor(urls: string[], o: PeerOptions = {}) {
    const seen = new Set<string>();
    this.peers = [];
    for (const raw of urls) {
      const url = normalizePeerUrl(raw);
      if (seen.has(url)) continue;
      seen.add(url);
      this.peers.push(openPeer(url, o));
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
    // idle lanes wait for the end of a batch in flight elsewhere: it may fail and come back to the queue
    let ended: { promise: Promise<void>; resolve: () => void } | undefined;
    const batchEnded = () => {
      if (!ended) {
        let resolve!: () => void;
        ended = { promise: new Promise<void>((r) => (resolve = r)), resolve };
      }
      return ended.promise;
    };
    const lane = async () => {
      for (;;) {
        const job = queue.shift();
        if (!job) {
          if (busy === 0) return;
          await batchEnded();
          continue;
        }
        busy++;
        try {
          const { p, b } = job;
          if (!p.stats.used) {
            if (!plan(b)) left.push(...b);
            continue;
          }
          const r = await peerBatch(p, b, keep(p.store.base), o);
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
          const e = ended;
          ended = undefined;
          e?.resolve();
        }
      }
    };
    const width = Math.max(1, Math.min(digests.length, Math.max(o.lanes, Math.min(MAX_LANES, 2 * live.size))));
    await Promise.all(Array.from({ length: width }, lane));
    return left;
  }

  /**
   * One object from its owner peer (a lazy read, nbd --from); undefined when
   * the origin must bring it. `accept` verifies and keeps, as for fetch.
   */
  async fetchOne<T>(d: Digest, accept: (encoded: Buffer) => Promise<T>, signal?: AbortSignal): Promise<{ value: T } | undefined> {
    const [entry] = this.assign([d]);
    if (!entry) return undefined;
    return peerOne(this.peers[entry[0]]!, d, accept, signal);
  }

  async close(): Promise<void> {
    await Promise.all(this.peers.map((p) => p.store.close()));
  }
}
