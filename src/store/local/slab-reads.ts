/**
 * Reads of a local store's objects into a shared slab (slab.ts): the codec
 * workers decode and verify each object straight into a slot the caller
 * holds, so nothing is allocated per object and nothing moves back between
 * threads but a few numbers. For a reader that passes the bytes on and lets
 * go (an NBD server). An object that gets no slot (slab full) or that is not
 * where the index said (repacked since) is read through the store's own get,
 * verified the same way.
 */
import { CodecPool } from './codec-pool.js';
import { objectPath, type Placed } from './codec-worker.js';
import { packPath } from './pack-file.js';
import type { LocalReads } from './local-reads.js';
import type { IndexedObject } from './sqlite-index.js';
import { Slab, SlabSlot } from './slab.js';
import type { SlabItem } from './slab-decode.js';
import { VmdnError, type ErrorCode } from '../../errors.js';

/** Objects per worker message: a 2 MiB read of ~36 KiB objects still keeps both workers busy (32, not 16: half the messages, each ~2 ms of work). */
const BATCH = 32;

/** Places remembered at most (knowPlaces). */
const MAX_PLACES = 1 << 16;

/** One object being read: its slot (null: a plain buffer from the store), and its bytes once decoded and verified. */
export interface SlabRead {
  slot: SlabSlot | null;
  ready: Promise<Uint8Array>;
  /**
   * The bytes, set just before `ready` resolves: a reader finding the read already done
   * takes them without an await (most of a client reading in order finds them so, ~15,000
   * awaits per read of base).
   */
  data?: Uint8Array;
}

function deferred(read: SlabRead): { p: Promise<Uint8Array>; resolve: (b: Uint8Array) => void; reject: (e: unknown) => void } {
  let resolve!: (b: Uint8Array) => void;
  let reject!: (e: unknown) => void;
  const p = new Promise<Uint8Array>((a, b) => ((resolve = a), (reject = b)));
  // read-ahead may never look at a failure: whoever awaits `p` still sees it
  p.catch(() => undefined);
  read.ready = p;
  return { p, resolve: (b) => resolve((read.data = b)), reject };
}

export class SlabReads {
  private readonly pool: CodecPool;
  /**
   * Where objects are, looked up ahead (`knowPlaces`): one index query for thousands of an
   * image's chunks, where a query per batch of reads cost the NBD server's main thread more
   * than anything else it did (~0.1 s of its ~0.5 s CPU for base). At most MAX_PLACES
   * (a huge image's would not fit in memory). A place gone stale (a gc moved the object)
   * fails in the worker as E_NOT_FOUND: it is forgotten, and that read goes through the
   * store's get, which looks again.
   */
  private readonly places = new Map<string, Placed>();
  /** Decodes sent and not answered yet (close() waits for them when the pool is the store's). */
  private readonly pending = new Set<Promise<unknown>>();

  /** Whether `pool` is ours to close (not the store's). */
  private readonly ownPool: boolean;

  /**
   * Reads decode in the store's own codec workers, unless `workers` asks for a pool of
   * their own (tests that kill one): a second pool beside the store's idle one cost two
   * more threads' start-up (~0.1 s of CPU each) and their memory, for nothing.
   */
  constructor(private readonly store: LocalReads, readonly slab: Slab, workers?: number) {
    const shared = workers === undefined ? store.codecPool() : null;
    this.ownPool = !shared;
    this.pool = shared ?? new CodecPool(workers ?? 2);
  }

  private placeOf(digest: string, row: { pack?: string; offset?: number; storedSize: number } | undefined): Placed {
    if (row?.pack !== undefined) return { digest, objPath: packPath(this.store.packsDir, row.pack), packOffset: row.offset!, storedSize: row.storedSize };
    return { digest, objPath: objectPath(this.store.objectsDir, digest) };
  }

  /** Look up where `digests` are, in one query, for the reads to come (a read of one not known looks it up then). */
  knowPlaces(digests: readonly string[]): void {
    const want = [...new Set(digests)].filter((d) => !this.places.has(d));
    if (!want.length) return;
    // the older ones go (a reader moves on): ~150 bytes each, so a few MB at most
    if (this.places.size + want.length > MAX_PLACES) this.places.clear();
    const rows = this.store.index.placesInOrder(want);
    want.forEach((digest, i) => {
      const r = rows[i];
      // not indexed: no place to remember (statPlaces says the same when it is read)
      if (r) this.places.set(digest, this.placeOf(digest, r));
    });
  }

  /**
   * Start reading each object (`size`: its length by the manifest; any other is refused).
   * Each SlabRead's slot has one holder, the caller, who unrefs it when done.
   */
  read(items: Array<{ digest: string; size: number }>): SlabRead[] {
    const out: SlabRead[] = [];
    const slotted: Array<{ item: SlabItem; slot: SlabSlot; d: ReturnType<typeof deferred> }> = [];
    const plain: Array<{ digest: string; size: number; d: ReturnType<typeof deferred> }> = [];
    for (const { digest, size } of items) {
      const slot = this.slab.alloc(size);
      const r = { slot } as SlabRead;
      const d = deferred(r);
      out.push(r);
      if (!slot) plain.push({ digest, size, d });
      // the worker's own hold: the caller may drop its slot before the worker is done writing into it
      else slotted.push({ item: { digest, objPath: '', at: slot.at, size }, slot: slot.ref(), d });
    }
    if (slotted.length) {
      let rows: Map<string, IndexedObject> = new Map();
      const unknown: string[] = [];
      for (const s of slotted) {
        const p = this.places.get(s.item.digest);
        if (p) Object.assign(s.item, p);
        else unknown.push(s.item.digest);
      }
      try {
        if (unknown.length) rows = this.store.index.statPlaces(unknown);
      } catch (err) {
        // (an index closed under us): each read fails, and the worker's holds taken above go,
        // or those slots would never come back; the caller lets go of its own as for any failure
        for (const s of slotted) {
          s.slot.unref();
          s.d.reject(err);
        }
        slotted.length = 0;
      }
      for (const s of slotted) if (!s.item.objPath) Object.assign(s.item, this.placeOf(s.item.digest, rows.get(s.item.digest)));
      const per = Math.min(BATCH, Math.ceil(slotted.length / this.pool.size));
      for (let i = 0; i < slotted.length; i += per) this.decode(slotted.slice(i, i + per));
    }
    if (plain.length) this.viaStore(plain);
    return out;
  }

  private decode(batch: Array<{ item: SlabItem; slot: SlabSlot; d: ReturnType<typeof deferred> }>): void {
    const p = this.pool.run({ op: 'getInto', items: batch.map((b) => b.item), slab: this.slab.buffer, source: this.store.dir }).then(
      (r) => {
        const again: typeof batch = [];
        r.places!.forEach((p, i) => {
          const b = batch[i]!;
          if (!('error' in p)) b.d.resolve(b.slot.view);
          else if (p.error.code === 'E_NOT_FOUND') {
            this.places.delete(b.item.digest);
            again.push(b);
          }
          else b.d.reject(new VmdnError(p.error.code as ErrorCode, p.error.message, p.error.data));
        });
        for (const b of batch) b.slot.unref();
        // not where the index said: repacked meanwhile (the store's get looks again)
        if (again.length) this.viaStore(again.map((b) => ({ digest: b.item.digest, size: b.item.size, d: b.d })));
      },
      (err) => {
        for (const b of batch) {
          b.slot.unref();
          b.d.reject(err);
        }
      },
    );
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private viaStore(items: Array<{ digest: string; size: number; d: ReturnType<typeof deferred> }>): void {
    const all = this.store.getMany(items.map((i) => i.digest));
    items.forEach(({ digest, size, d }, k) => {
      all.then((r) => {
        const x = r[k]!;
        if (x instanceof Error) d.reject(x);
        else if (x.length !== size) d.reject(new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${x.length} bytes, the manifest says ${size}`, { digest }));
        else d.resolve(x);
      }, d.reject);
    });
  }

  async close(): Promise<void> {
    // the store's pool is the store's to close; what it still decodes for us lands first
    if (this.ownPool) await this.pool.close();
    else await Promise.all(this.pending);
  }
}
