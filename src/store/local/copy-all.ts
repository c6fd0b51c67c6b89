/**
 * LocalStore.copyAll: a whole image's chunks decoded, verified and written
 * into one file by the codec workers, with as little as possible on the main
 * thread. Measured on the corpus image (15,283 chunks, 517 MiB): per batch of
 * ~32 objects the main thread looked their places up (statPlaces), built the
 * items and woke for the answer; on a 2-core machine every wake-up of the main
 * thread takes a core from a worker. Here a message carries ~4 MiB (~110
 * objects) as flat data (run-table.ts), its places from one index query that
 * reads no digest back (placesInOrder), so the main thread wakes ~130 times in
 * all and does little each time.
 */
import type { CodecPool } from './codec-pool.js';
import { packRunTable, type RunTable, type TableRow } from './run-table.js';
import type { StoreIndex } from './sqlite-index.js';
import { objectPath } from './codec-worker.js';
import { packPath } from './pack-file.js';
import { assertDigest, type Digest } from '../digest.js';
import { MAX_OBJECT_SIZE } from '../codec.js';
import { VmdnError } from '../../errors.js';

/** Decoded bytes per message; the worker writes them in runs of its run buffer (read-runs.ts). */
export const COPY_BATCH_BYTES = 4 << 20;
/** Objects per message, whatever their size (the items cost a structured clone each way). */
export const COPY_BATCH_ITEMS = 256;
/** Messages in flight per worker: one it works on, one waiting, so it never idles for the main thread. */
const IN_FLIGHT_PER_WORKER = 2;

export interface CopyItem {
  digest: Digest;
  /** Where the object's data goes in the file. */
  offset: number;
  /** Its size by the manifest: an object of another size is refused before any byte of it is written. */
  length: number;
}

/**
 * Where each item's data comes from, in one pass with no object per item (it runs once over
 * ~15k items, in code not yet optimized, before the copy starts: building an item object per
 * chunk and batches of them took ~100 ms of the main thread, with the garbage collection):
 * `firstOf[i]` is the item whose decoded bytes item i takes (i itself for an object's first
 * place), `copies` the other places of each repeated object by its first item. The corpus image
 * has 604 repeated chunks (21.8 MB): each is decoded and hashed once, written at every place. A
 * repeat of another length stays an item of its own (decoding it fails the length check, as it
 * must). Items with an impossible place are refused.
 */
export function planCopies(items: readonly CopyItem[]): { firstOf: Int32Array; copies: Map<number, number[]> } {
  const first = new Map<Digest, number>();
  const firstOf = new Int32Array(items.length);
  const copies = new Map<number, number[]>();
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    if (!(Number.isSafeInteger(it.length) && it.length >= 0 && it.length <= MAX_OBJECT_SIZE && Number.isSafeInteger(it.offset) && it.offset >= 0)) {
      throw new VmdnError('E_INTERNAL', `bad object place ${it.offset}+${it.length}`, { digest: it.digest });
    }
    const f = first.get(it.digest);
    if (f !== undefined && items[f]!.length === it.length) {
      firstOf[i] = f;
      const c = copies.get(f);
      if (c) c.push(it.offset);
      else copies.set(f, [it.offset]);
    } else {
      firstOf[i] = i;
      if (f === undefined) first.set(it.digest, i);
    }
  }
  return { firstOf, copies };
}

export interface CopyAllOptions {
  signal?: AbortSignal;
  /** Told the bytes each batch placed, as it lands (in no particular order). */
  onBatch?: (bytes: number) => void;
  /** Decoded bytes per message (tests use small ones to cut an image into many batches). */
  batchBytes?: number;
}

/** What copyAll needs of the store (LocalReads). */
export interface CopyAllStore {
  readonly index: StoreIndex;
  readonly dir: string;
  readonly packsDir: string;
  readonly objectsDir: string;
  /** The per-batch path, which looks the objects up again: the retry of a batch whose pack moved. */
  copyRuns(items: CopyItem[], to: { outPath?: string; fd?: number }): Promise<number>;
}

/** Cut `items` into messages of at most `bytes` decoded bytes (and COPY_BATCH_ITEMS objects), in order. */
export function planBatches<T extends { length: number }>(items: readonly T[], bytes = COPY_BATCH_BYTES): T[][] {
  const out: T[][] = [];
  let cur: T[] = [];
  let size = 0;
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    if (cur.length > 0 && (size + it.length > bytes || cur.length >= COPY_BATCH_ITEMS)) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(it);
    size += it.length;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** One batch (indexes of first places) with the objects' places by the index (one query for the batch), as a table for the worker. */
function tableOf(store: CopyAllStore, items: readonly CopyItem[], batch: readonly number[], copies: Map<number, number[]>): RunTable {
  const rows = store.index.placesInOrder(batch.map((k) => items[k]!.digest));
  return packRunTable(batch.map((k, i): TableRow => {
    const it = items[k]!;
    const r = rows[i];
    const c = copies.get(k);
    const more = c ? { copies: c } : {};
    if (r?.pack !== undefined) return { digest: it.digest, objPath: packPath(store.packsDir, r.pack), packOffset: r.offset!, storedSize: r.storedSize, offset: it.offset, length: it.length, ...more };
    // not in a pack: a loose file, named by the digest (checked: it becomes a path)
    return { digest: assertDigest(it.digest), objPath: objectPath(store.objectsDir, it.digest), offset: it.offset, length: it.length, ...more };
  }));
}

/** A batch with every copy as an item of its own (the per-batch retry path, copyRuns). */
function expand(items: readonly CopyItem[], batch: readonly number[], copies: Map<number, number[]>): CopyItem[] {
  return batch.flatMap((k) => {
    const it = items[k]!;
    return [it, ...(copies.get(k) ?? []).map((offset) => ({ digest: it.digest, offset, length: it.length }))];
  });
}

/**
 * Write every item (best in output order: adjacent objects become one write) into `to`; resolves
 * to the bytes placed. Batches are cut as they are sent, each with its places looked up then, so
 * the workers start on the first one at once. Stops at the first bad object (E_CORRUPT_OBJECT
 * naming its digest), after the batches already in the workers settle, so nothing writes into
 * the file once the copy has failed.
 */
export async function copyAll(store: CopyAllStore, pool: CodecPool, items: CopyItem[], to: { outPath?: string; fd?: number }, opts: CopyAllOptions = {}): Promise<number> {
  const { firstOf, copies } = planCopies(items);
  const bytes = opts.batchBytes ?? COPY_BATCH_BYTES;
  // the next batch: first places only, in order, up to `bytes` decoded bytes and COPY_BATCH_ITEMS objects
  let cursor = 0;
  const nextBatch = (): number[] | undefined => {
    const batch: number[] = [];
    let size = 0;
    for (; cursor < items.length; cursor++) {
      if (firstOf[cursor] !== cursor) continue;
      const len = items[cursor]!.length;
      if (batch.length > 0 && (size + len > bytes || batch.length >= COPY_BATCH_ITEMS)) break;
      batch.push(cursor);
      size += len;
    }
    return batch.length > 0 ? batch : undefined;
  };
  let total = 0;
  let failed: unknown;
  const lane = async () => {
    for (let batch = nextBatch(); batch !== undefined && failed === undefined; batch = failed === undefined ? nextBatch() : undefined) {
      try {
        opts.signal?.throwIfAborted();
        let n: number;
        try {
          n = (await pool.run({ op: 'copyTable', ...tableOf(store, items, batch, copies), source: store.dir, ...to })).size!;
        } catch (err) {
          // gone from where the index said (gc repacked it meanwhile): copyRuns looks the objects up again
          if (!(err instanceof VmdnError && err.code === 'E_NOT_FOUND')) throw err;
          n = await store.copyRuns(expand(items, batch, copies), to);
        }
        total += n;
        opts.onBatch?.(n);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: pool.size * IN_FLIGHT_PER_WORKER }, lane));
  if (failed !== undefined) throw failed;
  return total;
}
