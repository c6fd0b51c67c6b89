/**
 * One peer of a pull and its exchanges (docs/p2p.md): a batch, single GETs
 * where it has no batch endpoint, one object for a lazy read. What a peer did
 * not bring intact (absent, cut, timed out, corrupt) comes from elsewhere;
 * every object is verified by the receiver like one from the origin, so a peer
 * can waste a request, never corrupt an image. Its health: a peer that sent a
 * corrupt object is dropped at once, one whose exchanges failed MAX_FAILURES
 * times in a row is dropped for the rest of the pull.
 */
import type { Digest } from '../../store/digest.js';
import { VmdnError } from '../../errors.js';
import { HttpStore, type BatchRecord } from './http-store.js';
import { peerSeed } from './peer-rendezvous.js';

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

export interface PeerOptions {
  /** Idle timeout of a peer request (default 20 s, against the origin's 60 s: an edge of a busy site may take a while to answer, a stalled one should not hold a pull for long). */
  timeoutMs?: number;
  /** Keep-alive connections per peer. */
  connections?: number;
}

/** Failed exchanges in a row after which a peer is dropped for the rest of the pull. */
const MAX_FAILURES = 3;

export interface Peer {
  store: HttpStore;
  seed: number;
  stats: PeerStats;
  /** Failed exchanges since its last good one (MAX_FAILURES drops it). */
  failuresInARow: number;
}

/** The peer at `url` (normalized), unused so far. */
export function openPeer(url: string, o: PeerOptions): Peer {
  // one attempt: the origin is the retry; no token: the origin's credentials are not for other sites
  // a peer slower than 128 KiB/s per request (after 60 s) is dropped: the origin is the better source then
  const store = new HttpStore(url, { retries: 1, verifyAttempts: 1, timeoutMs: o.timeoutMs ?? 20_000, deadlineMs: 60_000, minBytesPerSecond: 128 << 10, connections: o.connections ?? 4 });
  return { store, seed: peerSeed(url), failuresInARow: 0, stats: { url: store.base, used: true, objects: 0, bytes: 0, failures: 0, corrupt: 0, fellBack: 0 } };
}

/** Local failures (disk, index, abort) stop the pull; anything else is the peer's and sends its objects to the origin. */
function isLocal(err: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return true;
  return err instanceof VmdnError && (err.code === 'E_IO' || err.code === 'E_STORE' || err.code === 'E_ABORTED' || err.code === 'E_INTERNAL');
}

/** A failed exchange with `p`: counted; the peer is dropped after MAX_FAILURES in a row. */
function peerFailed(p: Peer): void {
  p.stats.failures++;
  p.failuresInARow++;
  if (p.failuresInARow >= MAX_FAILURES) p.stats.used = false;
}

/**
 * One batch from one peer (single GETs if it has no batch endpoint): what it
 * did not bring intact, and whether the exchange failed (to be asked again)
 * rather than the peer lacking objects or lying about them (origin).
 */
export async function peerBatch(p: Peer, ds: Digest[], keepRaw: (records: BatchRecord[]) => Promise<unknown[]>, o: { groupBytes: number; signal?: AbortSignal }): Promise<{ rest: Digest[]; failed: boolean }> {
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
    if (!r) return { rest: await peerSingles(p, ds, keep, o.signal), failed: false };
    if (r.corrupt.length) {
      p.stats.corrupt += r.corrupt.length;
      p.stats.used = false;
      return { rest: [...r.missing, ...r.corrupt], failed: false };
    }
    // this batch's exchange failed (or another one's to the same peer meanwhile)
    if (p.store.batchesFailed > failedBefore) {
      peerFailed(p);
      return { rest: r.missing, failed: true };
    }
    p.failuresInARow = 0;
    return { rest: r.missing, failed: false };
  } catch (err) {
    if (isLocal(err, o.signal)) throw err;
    peerFailed(p);
    return { rest: ds.filter((d) => !kept.has(d)), failed: true };
  }
}

/**
 * One object from peer `p` (a lazy read, nbd --from); undefined when the
 * origin must bring it. `accept` verifies and keeps, as for a batch.
 */
export async function peerOne<T>(p: Peer, d: Digest, accept: (encoded: Buffer) => Promise<T>, signal?: AbortSignal): Promise<{ value: T } | undefined> {
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
    } else peerFailed(p);
    return undefined;
  }
}

async function peerSingles(p: Peer, ds: Digest[], keep: (records: BatchRecord[]) => Promise<unknown[]>, signal?: AbortSignal): Promise<Digest[]> {
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
      } else peerFailed(p);
    }
  }
  return rest;
}
