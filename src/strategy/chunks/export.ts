/**
 * Chunks strategy, assemble side: rebuild a disk from its manifest, fetching
 * objects with bounded read-ahead (decoded and verified in codec workers or by
 * the remote store) while writing strictly in order.
 */
import type { DiskWriter } from '../../container/disk.js';
import { canCopyToFile, canGetMany, canReadInOrder, type CopyToFile, type GetMany, type ReadInOrder, type ReadableStore } from '../../store/types.js';
import type { Manifest } from '../../model/manifest.js';
import { throttle, type OnProgress } from '../../util/progress.js';
import { VmdnError } from '../../errors.js';

export interface AssembleOptions {
  signal?: AbortSignal;
  onProgress?: OnProgress;
  /** Objects fetched ahead of the writer. */
  readAhead?: number;
}

export async function assembleChunks(manifest: Manifest, store: ReadableStore, writer: DiskWriter, opts: AssembleOptions = {}): Promise<{ bytesWritten: number }> {
  if (writer.directTarget && canCopyToFile(store)) return assembleDirect(manifest, store, writer, writer.directTarget, opts);
  if (canReadInOrder(store)) return assembleInOrder(manifest, store, writer, opts);
  if (canGetMany(store)) return assembleBatched(manifest, store, writer, opts);
  const { signal } = opts;
  const readAhead = Math.max(1, opts.readAhead ?? 32);
  const progress = throttle(opts.onProgress);
  const chunks = manifest.chunks;
  const total = chunks.reduce((n, c) => n + c[1], 0);
  const window: Array<Promise<Uint8Array>> = [];
  let next = 0;
  const fill = () => {
    while (next < chunks.length && window.length < readAhead) {
      const p = store.get(chunks[next]![2], { signal });
      p.catch(() => {}); // surfaced when awaited in order
      window.push(p);
      next++;
    }
  };
  return writeThrough(writer, async () => {
    let done = 0;
    for (let i = 0; i < chunks.length; i++) {
      signal?.throwIfAborted();
      fill();
      done += await writeChunk(writer, chunks[i]!, await window.shift()!);
      progress?.({ phase: 'export', done, total, unit: 'bytes' });
    }
    return done;
  });
}

/**
 * Any writer from a store that reads in order into reused buffers (the local store,
 * ordered-reads.ts): the writers copy what they keep, so a buffer is free again once
 * write() has settled.
 */
async function assembleInOrder(manifest: Manifest, store: ReadableStore & ReadInOrder, writer: DiskWriter, opts: AssembleOptions): Promise<{ bytesWritten: number }> {
  const progress = throttle(opts.onProgress);
  const chunks = manifest.chunks;
  const total = chunks.reduce((n, c) => n + c[1], 0);
  return writeThrough(writer, async () => {
    let done = 0;
    await store.readInOrder(copyItems(chunks), async (i, data) => {
      done += await writeChunk(writer, chunks[i]!, data);
      progress?.({ phase: 'export', done, total, unit: 'bytes' });
    }, { signal: opts.signal });
    return done;
  });
}

/** Chunks per getMany call of assembleBatched (~2 MiB of the corpus's), and calls in flight ahead of the writer. */
const GET_ITEMS = 64;
const GETS_AHEAD = 4;

/**
 * Any writer from a store with getMany (the local store: its codec workers decode and verify
 * a batch per message into one buffer): measured on the corpus image into qcow2, one get()
 * per chunk was ~15,000 messages each way and a fresh buffer per object. The writer still
 * takes the chunks one by one, in order.
 */
async function assembleBatched(manifest: Manifest, store: ReadableStore & GetMany, writer: DiskWriter, opts: AssembleOptions): Promise<{ bytesWritten: number }> {
  const { signal } = opts;
  const progress = throttle(opts.onProgress);
  const chunks = manifest.chunks;
  const total = chunks.reduce((n, c) => n + c[1], 0);
  const window: Array<Promise<Array<Uint8Array | Error>>> = [];
  let next = 0;
  const fill = () => {
    while (next < chunks.length && window.length < GETS_AHEAD) {
      const p = store.getMany(chunks.slice(next, next + GET_ITEMS).map((c) => c[2]), { signal });
      p.catch(() => {}); // surfaced when awaited in order
      window.push(p);
      next += GET_ITEMS;
    }
  };
  return writeThrough(writer, async () => {
    let done = 0;
    for (let i = 0; i < chunks.length; ) {
      signal?.throwIfAborted();
      fill();
      const got = await window.shift()!;
      fill(); // the next batch is decoded while this one is written
      if (got.length !== Math.min(GET_ITEMS, chunks.length - i)) throw new VmdnError('E_INTERNAL', `getMany answered ${got.length} objects for a batch at chunk ${i}`);
      for (const data of got) {
        if (data instanceof Error) throw data;
        done += await writeChunk(writer, chunks[i++]!, data);
      }
      progress?.({ phase: 'export', done, total, unit: 'bytes' });
    }
    return done;
  });
}

/** Bytes of chunks handed to a worker per message (~32 objects of the corpus: per-message costs vanish, the run buffer stays in cache). */
const BATCH_BYTES = 1 << 20;
const BATCH_ITEMS = 64;
/** Bytes placed between two background syncs of the output (DiskWriter.syncAhead). */
const SYNC_AHEAD_BYTES = 32 << 20;

/**
 * Fast path: workers decode, verify and pwrite the objects into the output
 * file themselves, in any order; the main thread only schedules: the store
 * the whole image when it can (copyAll), else a batch of consecutive chunks
 * per message (copyRuns, see read-runs.ts), else one object per message.
 */
async function assembleDirect(manifest: Manifest, store: CopyToFile, writer: DiskWriter, target: string, opts: AssembleOptions): Promise<{ bytesWritten: number }> {
  const { signal } = opts;
  const progress = throttle(opts.onProgress);
  const chunks = manifest.chunks;
  const total = chunks.reduce((n, c) => n + c[1], 0);
  let done = 0;
  let synced = 0;
  const placed = (n: number) => {
    done += n;
    progress?.({ phase: 'export', done, total, unit: 'bytes' });
    if (done - synced >= SYNC_AHEAD_BYTES) {
      synced = done;
      writer.syncAhead?.();
    }
  };
  try {
    if (store.copyAll) await store.copyAll(copyItems(chunks), { outPath: target }, { signal, onBatch: placed });
    else await copyInLanes(chunks, store, target, placed, opts);
    await store.releaseTarget(target);
    await writer.finish();
  } catch (err) {
    await store.releaseTarget(target).catch(() => {});
    await writer.abort().catch(() => {});
    throw err;
  }
  return { bytesWritten: done };
}

/** The chunks as copyAll's items (an indexed loop: it runs once, unoptimized, over ~15k chunks before the copy starts). */
function copyItems(chunks: Manifest['chunks']): Array<{ digest: string; offset: number; length: number }> {
  const items = new Array<{ digest: string; offset: number; length: number }>(chunks.length);
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    items[i] = { digest: c[2], offset: c[0], length: c[1] };
  }
  return items;
}

/** Stores without copyAll: batches (copyRuns) or single objects, a few messages in flight. */
async function copyInLanes(chunks: Manifest['chunks'], store: CopyToFile, target: string, placed: (n: number) => void, opts: AssembleOptions): Promise<void> {
  let next = 0;
  const one = async () => {
    const [offset, length, digest] = chunks[next++]!;
    const n = await store.copyTo(digest, target, offset);
    if (n !== length) throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${n} bytes, manifest says ${length}`, { digest });
    return n;
  };
  const batch = async (copyRuns: NonNullable<CopyToFile['copyRuns']>) => {
    const items: Array<{ digest: string; offset: number; length: number }> = [];
    let bytes = 0;
    while (next < chunks.length && items.length < BATCH_ITEMS && bytes < BATCH_BYTES) {
      const [offset, length, digest] = chunks[next++]!;
      items.push({ digest, offset, length });
      bytes += length;
    }
    return copyRuns.call(store, items, { outPath: target });
  };
  // batches: a few in flight per worker keep both busy; single objects: enough to hide the round trips
  const concurrency = Math.max(1, opts.readAhead ?? (store.copyRuns ? 6 : 32));
  const lane = async () => {
    while (next < chunks.length) {
      opts.signal?.throwIfAborted();
      placed(store.copyRuns ? await batch(store.copyRuns) : await one());
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
}

/** Write one chunk's bytes at its place, once its length is the manifest's: the bytes written. */
async function writeChunk(writer: DiskWriter, [offset, length, digest]: readonly [number, number, string], data: Uint8Array): Promise<number> {
  if (data.length !== length) {
    throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${data.length} bytes, manifest says ${length}`, { digest });
  }
  await writer.write(offset, data);
  return length;
}

/** Run the copy, then finish the writer; on any failure abort it (a partial output is never left behind) and rethrow. */
async function writeThrough(writer: DiskWriter, copy: () => Promise<number>): Promise<{ bytesWritten: number }> {
  try {
    const bytesWritten = await copy();
    await writer.finish();
    return { bytesWritten };
  } catch (err) {
    await writer.abort().catch(() => {});
    throw err;
  }
}
