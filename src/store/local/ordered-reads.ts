/**
 * LocalStore.readInOrder: an image's objects decoded and verified by the codec
 * workers into a few reused shared buffers, and handed to the caller in order:
 * the read path of an export into any format but raw (whose objects the
 * workers write into the file themselves, copy-all.ts). Measured on the corpus
 * image into qcow2: with getMany, each batch came back in a fresh buffer; the
 * workers' decoding into fresh pages cost as much as the decoding itself (page
 * faults), and the main thread collected the buffers' garbage. Here a batch is
 * ~2 MiB of objects decoded into one of ~5 buffers that are used again and
 * again, moved to a worker and back with each batch (plain ArrayBuffers, not
 * shared ones: V8 copies out of a SharedArrayBuffer with a relaxed-atomic
 * memmove, and the writers' copies of the data took 2.5x as long).
 */
import type { CodecPool } from './codec-pool.js';
import { objectPath } from './codec-worker.js';
import { packPath } from './pack-file.js';
import type { StoreIndex } from './sqlite-index.js';
import type { SlabItem } from './slab-decode.js';
import { planBatches } from './copy-all.js';
import { assertDigest, type Digest } from '../digest.js';
import { VmdnError, type ErrorCode } from '../../errors.js';

/** Bytes of one reused buffer: one batch of objects (an object larger than this gets a buffer of its own). */
export const ORDERED_SLAB_BYTES = 2 << 20;
/** Batches in the workers while the caller takes one: enough to keep two workers busy. */
const AHEAD = 4;

export interface OrderedItem {
  digest: Digest;
  /** Its size by the manifest: an object of another size is refused. */
  length: number;
}

/** What readInOrder needs of the store (LocalReads). */
export interface OrderedStore {
  readonly index: StoreIndex;
  readonly dir: string;
  readonly packsDir: string;
  readonly objectsDir: string;
  /** One object through the store's own path (it looks the object up again): for one that was not where the index said. */
  get(digest: Digest, opts?: { signal?: AbortSignal }): Promise<Uint8Array>;
}

export interface OrderedOptions {
  signal?: AbortSignal;
  /** Bytes per batch (tests use small ones). */
  batchBytes?: number;
}

type Place = { at: number; size: number } | { error: { code: string; message: string; data: Record<string, unknown> } };

interface Flight {
  items: SlabItem[];
  /** Index of the batch's first object in the caller's list. */
  first: number;
  /** The buffer back from the worker, and where each object is in it. */
  answer: Promise<{ slab: Uint8Array; places: Place[] }>;
}

/**
 * Call `each(i, bytes)` for every item, in order, each awaited before the next. `bytes` is a
 * view of a buffer that is used again once `each` has settled: keep a copy, not the view.
 * Every object is verified by its hash in the worker before the caller sees a byte of it.
 */
export async function readInOrder(
  store: OrderedStore,
  pool: CodecPool,
  items: readonly OrderedItem[],
  each: (i: number, bytes: Uint8Array) => void | Promise<void>,
  opts: OrderedOptions = {},
): Promise<void> {
  const size = opts.batchBytes ?? ORDERED_SLAB_BYTES;
  const indexed = items.map((it, i) => ({ digest: it.digest, length: it.length, i }));
  const batches = planBatches(indexed, size);
  const free: ArrayBuffer[] = [];
  const start = (batch: typeof indexed): Flight => {
    const bytes = batch.reduce((n, it) => n + it.length, 0);
    const slab = bytes <= size ? (free.pop() ?? new ArrayBuffer(size)) : new ArrayBuffer(bytes);
    const rows = store.index.placesInOrder(batch.map((it) => it.digest));
    let at = 0;
    const slots = batch.map((it, k): SlabItem => {
      const r = rows[k];
      const slot = { at, size: it.length };
      at += it.length;
      if (r?.pack !== undefined) return { digest: it.digest, objPath: packPath(store.packsDir, r.pack), packOffset: r.offset!, storedSize: r.storedSize, ...slot };
      // not in a pack: a loose file, named by the digest (checked: it becomes a path)
      return { digest: assertDigest(it.digest), objPath: objectPath(store.objectsDir, it.digest), ...slot };
    });
    // moved, not copied: the worker moves it back as the answer's `data`
    const answer = pool.run({ op: 'getInto', items: slots, slab, source: store.dir }, [slab]).then((r) => ({ slab: r.data!, places: r.places! }));
    answer.catch(() => undefined); // surfaced when its turn comes
    return { items: slots, first: batch[0]!.i, answer };
  };
  const window: Flight[] = [];
  let next = 0;
  const fill = () => {
    while (next < batches.length && window.length < AHEAD) window.push(start(batches[next++]!));
  };
  fill();
  while (window.length > 0) {
    opts.signal?.throwIfAborted();
    const f = window.shift()!;
    const { slab, places } = await f.answer;
    fill(); // the next batch goes to the workers before this one is handed over
    if (places.length !== f.items.length) throw new VmdnError('E_INTERNAL', `getInto answered ${places.length} objects for ${f.items.length}`);
    for (let k = 0; k < f.items.length; k++) {
      const p = places[k]!;
      const it = f.items[k]!;
      let bytes: Uint8Array;
      if (!('error' in p)) bytes = slab.subarray(p.at, p.at + p.size);
      else if (p.error.code !== 'E_NOT_FOUND') throw new VmdnError(p.error.code as ErrorCode, p.error.message, p.error.data);
      else {
        // not where the index said (gc repacked it meanwhile): the store's get looks it up again
        bytes = await store.get(it.digest, { signal: opts.signal });
        if (bytes.length !== it.size) throw new VmdnError('E_CORRUPT_OBJECT', `object ${it.digest.slice(0, 12)} has ${bytes.length} bytes, the manifest says ${it.size}`, { digest: it.digest });
      }
      await each(f.first + k, bytes);
    }
    if (slab.byteLength === size) free.push(slab.buffer as ArrayBuffer);
  }
}
