/**
 * The pull's object work: download what the cache lacks (and, when the output
 * is a plain file, copy what it holds into the image), all in parallel.
 *
 * Objects come in batches (batch.ts), or one GET each from servers without
 * them. A downloaded object goes straight from the socket to a codec worker, which
 * decodes and verifies it, keeps it in the cache by atomic rename and, given
 * a placement, writes its data into the image at every offset the manifest
 * gives it. So each object is decoded once, the main thread only speaks HTTP,
 * and the image is written while the download runs instead of after it.
 */
import type { Digest } from '../../store/digest.js';
import type { LocalStore } from '../../store/local/local-store.js';
import type { Manifest } from '../../model/manifest.js';
import { throttle, type OnProgress } from '../../util/progress.js';
import { VmdnError } from '../../errors.js';
import type { BatchRecord, HttpStore } from './http-store.js';
import { fromArenas } from './batch-fetch.js';
import { WriteBehind } from './write-behind.js';
import type { Peers } from './peers.js';

/** Where the image's objects go: a file other threads may write at any offset (DiskWriter.directTarget). */
export interface Placement {
  target: string;
  offsets: Map<Digest, number[]>;
  lengths: Map<Digest, number>;
  /** Bytes of chunk data in the image (the progress total). */
  total: number;
}

export function placement(m: Manifest, target: string): Placement {
  const offsets = new Map<Digest, number[]>();
  const lengths = new Map<Digest, number>();
  let total = 0;
  for (const [offset, length, digest] of m.chunks) {
    const at = offsets.get(digest);
    if (at) at.push(offset);
    else offsets.set(digest, [offset]);
    lengths.set(digest, length);
    total += length;
  }
  return { target, offsets, lengths, total };
}

export interface ObjectWork {
  remote: HttpStore;
  cache: LocalStore;
  /** Parallel downloads (one keep-alive connection each). */
  concurrency: number;
  place?: Placement;
  /** Other sites asked first (peers.ts); what they do not bring comes from `remote`. */
  peers?: Peers;
  signal?: AbortSignal;
  onProgress?: OnProgress;
}

/** Local copies in flight: enough to keep every codec worker fed. */
const COPY_CONCURRENCY = 8;
/**
 * Objects per batch request and batches in flight: a few hundred objects pay
 * the per-request cost once; a few requests in flight keep the server busy
 * while the client verifies the previous ones.
 */
const BATCH_SIZE = 256;
const BATCH_LANES = 3;
/**
 * Batches started and not yet done: a lane asks for its next batch as soon as
 * its response has arrived, while the workers still verify it (up to this
 * many). Waiting for them first left the server idle at every turn of every
 * lane, and the workers idle while it answered. Each waiting batch holds at
 * most BATCH_PENDING_BYTES (batch-fetch.ts), ~3 MiB for 256 chunks.
 */
const BATCHES_STARTED = BATCH_LANES + 2;
/**
 * Bytes of a batch response handed to one codec worker in one message: a
 * message per object cost the workers a fifth of their time; 1 MiB is a few
 * dozen objects, arrives in a few ms on loopback, and still splits a batch
 * response across both workers.
 */
const GROUP_BYTES = 1 << 20;

function slices<T>(items: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += n) out.push(items.slice(i, i + n));
  return out;
}

/**
 * Download `fetch` into the cache and, with a placement, copy `held` (objects
 * the cache has) into the image. Resolves once every started task has ended,
 * so nothing writes to the cache or the image after it returns.
 */
export async function pullObjects(fetch: Digest[], held: Digest[], w: ObjectWork): Promise<void> {
  const place = w.place;
  const progress = throttle(w.onProgress);
  let done = 0;
  const total = place ? place.total : fetch.length;
  const behind = place && new WriteBehind(place.target);
  const placed = (d: Digest) => {
    const bytes = place ? place.lengths.get(d)! * place.offsets.get(d)!.length : 1;
    done += bytes;
    behind?.placed(bytes);
    progress?.({ phase: 'fetch', done, total, unit: place ? 'bytes' : 'objects' });
  };
  const keep = async (d: Digest, encoded: Buffer) => {
    const offsets = place?.offsets.get(d);
    const r = await w.cache.acceptEncoded(d, encoded, { source: w.remote.base, outPath: offsets && place!.target, offsets });
    if (offsets) checkLength(d, r.size, place!.lengths.get(d)!);
    placed(d);
  };
  const keepFrom = (source: string) => async (records: BatchRecord[]): Promise<unknown[]> => {
    const items = records.map((r) => ({ digest: r.digest, encoded: r.encoded, offsets: place?.offsets.get(r.digest) }));
    // a batch group's records are views of buffers no other group uses (batch-fetch.ts): moved to the worker whole
    const results = await w.cache.acceptEncodedMany(items, { source, outPath: place?.target, whole: fromArenas(records) });
    return results.map((r, i) => {
      if (r instanceof Error) return r;
      const d = items[i]!.digest;
      try {
        if (items[i]!.offsets) checkLength(d, r.size, place!.lengths.get(d)!);
      } catch (err) {
        return err;
      }
      placed(d);
      return undefined;
    });
  };
  const keepGroup = keepFrom(w.remote.base);
  const single = (noCache: boolean) => (d: Digest) => w.remote.fetchAccepted(d, (encoded) => keep(d, encoded), { signal: w.signal, noCache });
  const download = single(false);
  // batches first; what they did not bring intact goes one by one, a bad copy past caches
  const singles: Digest[] = [];
  const refetch: Digest[] = [];
  const batch = async (ds: Digest[], received: () => void) => {
    const r = await w.remote.fetchBatchGroups(ds, keepGroup, { signal: w.signal, groupBytes: GROUP_BYTES, onBody: received });
    singles.push(...(r ? r.missing : ds));
    refetch.push(...(r?.corrupt ?? []));
  };
  const copy = async (d: Digest) => {
    try {
      for (const off of place!.offsets.get(d)!) checkLength(d, await w.cache.copyTo(d, place!.target, off), place!.lengths.get(d)!);
    } catch (err) {
      if (!(err instanceof VmdnError) || (err.code !== 'E_CORRUPT_OBJECT' && err.code !== 'E_NOT_FOUND')) throw err;
      // a damaged or vanished local copy: drop it and take the object from the server instead
      await w.cache.delete(d);
      return download(d);
    }
    placed(d);
  };
  // one failure stops both lanes; both are waited for before it is thrown
  const stop: Stop = {};
  const downloads = async () => {
    // peers first (each verified like the origin's); the origin gets what they did not bring
    let fromOrigin = fetch;
    if (w.peers?.size && fetch.length) {
      try {
        fromOrigin = await w.peers.fetch(fetch, keepFrom, { batchSize: BATCH_SIZE, lanes: BATCH_LANES, groupBytes: GROUP_BYTES, signal: w.signal });
      } catch (err) {
        stop.failed ??= { err };
        return;
      }
    }
    await overlapped(slices(fromOrigin, BATCH_SIZE), batch, stop, w.signal);
    await drain(refetch, w.concurrency, single(true), stop, w.signal);
    await drain(singles, w.concurrency, download, stop, w.signal);
  };
  try {
    await Promise.all([
      downloads(),
      place ? drain(held.filter((d) => place.offsets.has(d)), COPY_CONCURRENCY, copy, stop, w.signal) : undefined,
    ]);
  } finally {
    await behind?.close();
  }
  if (stop.failed) throw stop.failed.err;
}

function checkLength(d: Digest, got: number, want: number): void {
  if (got !== want) throw new VmdnError('E_CORRUPT_OBJECT', `object ${d.slice(0, 12)} has ${got} bytes, manifest says ${want}`, { digest: d });
}

interface Stop {
  failed?: { err: unknown };
}

/**
 * Run `task` over `items` in BATCH_LANES lanes, each going on to its next item once `task` calls its
 * `received` (or ends), with at most BATCHES_STARTED unfinished; until done or `stop` records a failure.
 * Never rejects; resolves once every started task has ended.
 */
async function overlapped<T>(items: T[], task: (item: T, received: () => void) => Promise<void>, stop: Stop, signal?: AbortSignal): Promise<void> {
  const started = new Set<Promise<void>>();
  let next = 0;
  const lane = async () => {
    while (next < items.length && !stop.failed) {
      while (started.size >= BATCHES_STARTED) await Promise.race(started);
      if (next >= items.length || stop.failed) break;
      const item = items[next++]!;
      let received!: () => void;
      const arrived = new Promise<void>((resolve) => (received = resolve));
      const run = (async () => {
        try {
          signal?.throwIfAborted();
          await task(item, received);
        } catch (err) {
          stop.failed ??= { err };
        } finally {
          received();
        }
      })();
      started.add(run);
      void run.then(() => started.delete(run)); // run never rejects; removed only once added
      await arrived;
    }
  };
  await Promise.all(Array.from({ length: Math.min(items.length, BATCH_LANES) }, lane));
  while (started.size) await Promise.all([...started]);
}

/** Run `task` over `items` with `width` in flight until done or `stop` records a failure; never rejects. */
async function drain<T>(items: T[], width: number, task: (item: T) => Promise<void>, stop: Stop, signal?: AbortSignal): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length && !stop.failed) {
      try {
        signal?.throwIfAborted();
        await task(items[next++]!);
      } catch (err) {
        stop.failed ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(items.length, width) }, lane));
}
