/**
 * The reading half of LocalStore (local-store.ts): where an object is (a
 * stretch of a pack, or a loose file of an older store), and reads of it in the
 * codec workers (decoded and verified by hash), in runs of adjacent pack
 * entries where the caller reads many objects in disk order.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { CodecPool } from './codec-pool.js';
import { decodeObject } from '../codec.js';
import { objectPath, type Placed } from './codec-worker.js';
import { assertDigest, isDigest, type Digest } from '../digest.js';
import { StoreIndex, type IndexedObject } from './sqlite-index.js';
import { preadInto } from './pack-reader.js';
import { packPath } from './pack-file.js';
import { prefetchPlaces } from './prefetch.js';
import { copyAll, type CopyAllOptions, type CopyItem } from './copy-all.js';
import { readInOrder, type OrderedItem, type OrderedOptions } from './ordered-reads.js';
import type { LeaseOptions } from './lease.js';
import type { ObjectStat, ReadOptions } from '../types.js';
import { asVmdnError, VmdnError, type ErrorCode } from '../../errors.js';

export interface LocalStoreOptions {
  /** Codec worker threads; 0 runs (de)compression on the calling thread. */
  workers?: number;
  level?: number;
  /** How waits for the store lease are reported (default: stderr). */
  lease?: Omit<LeaseOptions, 'signal'>;
  /** Write new objects as loose files, not into packs (a cache whose evictions must free disk at once). */
  loose?: boolean;
}

/** Objects per getMany message: ~0.5 MiB of the corpus's chunks, so a 2 MiB read keeps both workers busy. */
const GET_BATCH = 16;

export abstract class LocalReads {
  readonly index: StoreIndex;
  protected pool: CodecPool | null = null;
  // fields, not getters that join on every call: they are read once per object
  readonly tmpDir: string;
  readonly objectsDir: string;
  readonly packsDir: string;
  readonly indexFile: string;

  protected constructor(readonly dir: string, protected readonly opts: LocalStoreOptions) {
    this.indexFile = path.join(dir, 'index.db');
    this.index = new StoreIndex(this.indexFile);
    this.tmpDir = path.join(dir, 'tmp');
    this.objectsDir = path.join(dir, 'objects');
    this.packsDir = path.join(dir, 'packs');
  }

  /** Where a loose object file is (or would be). */
  objectPath(digest: Digest): string {
    return objectPath(this.objectsDir, digest);
  }

  /** Where an object's encoded bytes are by the index: a stretch of a pack, or a loose file (also for one not indexed: reading it finds no file). */
  place(digest: Digest): Placed {
    return this.placeOf(digest, this.index.getObject(digest));
  }

  private placeOf(digest: Digest, row: IndexedObject | undefined): Placed {
    if (row?.pack !== undefined) return { digest, objPath: packPath(this.packsDir, row.pack), packOffset: row.offset!, storedSize: row.storedSize };
    return { digest, objPath: this.objectPath(digest) };
  }

  /**
   * Run a read; if it finds no object (its pack was repacked away by gc in
   * another process since we looked), look the object up again and, if it
   * moved, run once more.
   */
  private async again<T>(digests: Digest[], fn: (place: (d: Digest) => Placed) => Promise<T>): Promise<T> {
    const look = () => (digests.length === 1 ? new Map([[digests[0]!, this.index.getObject(digests[0]!)]]) : this.index.statPlaces(digests));
    const rows = look();
    try {
      return await fn((d) => this.placeOf(d, rows.get(d)));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      const now = look();
      if (digests.every((d) => now.get(d)?.pack === rows.get(d)?.pack)) throw err;
      return fn((d) => this.placeOf(d, now.get(d)));
    }
  }

  /** The store's codec workers, started if need be (null: the store runs without), for readers with requests of their own (slab-reads.ts). */
  codecPool(): CodecPool | null {
    return this.codec();
  }

  protected codec(): CodecPool | null {
    if (this.pool === null && (this.opts.workers ?? 2) > 0) this.pool = new CodecPool(this.opts.workers ?? 2);
    return this.pool;
  }

  async totals(): Promise<{ objects: number; size: number; stored: number }> {
    return this.index.totals();
  }

  /** The sum of statMany's stored sizes, without a row per object (a pull's summary of a whole image). */
  async storedBytes(digests: Iterable<Digest>): Promise<number> {
    return this.index.storedBytes(digests);
  }

  async statMany(digests: Iterable<Digest>): Promise<Map<Digest, ObjectStat>> {
    return this.index.statMany(digests);
  }

  async has(digest: Digest): Promise<boolean> {
    return this.index.getObject(digest) !== undefined;
  }

  async stat(digest: Digest): Promise<ObjectStat | undefined> {
    const o = this.index.getObject(digest);
    return o && statOf(o);
  }

  async get(digest: Digest, opts: ReadOptions = {}): Promise<Uint8Array> {
    assertDigest(digest);
    opts.signal?.throwIfAborted();
    // the first read (an image's manifest, as a rule) starts the workers but is decoded here: it
    // does not wait ~0.1 s for them to boot, and the caller parses it while they do
    const booting = this.pool === null;
    const pool = this.codec();
    try {
      return await this.again([digest], async (place) => {
        if (pool && !booting) return (await pool.run({ op: 'get', ...place(digest), source: this.dir })).data!;
        return decodeObject(digest, await this.readEncoded(place(digest)), this.dir);
      });
    } catch (err) {
      throw this.notFound(err, digest);
    }
  }

  /** An object's encoded bytes, read on this thread (a pack's stretch synchronously, as the servers read files). */
  protected async readEncoded(p: Placed): Promise<Uint8Array> {
    const { digest } = p;
    if (p.packOffset === undefined) return fs.readFile(p.objPath);
    const buf = Buffer.allocUnsafe(p.storedSize!);
    preadInto(p.objPath, p.packOffset, p.storedSize!, buf, 0, digest, this.dir);
    return buf;
  }

  /**
   * get() for many objects, a few trips to the workers in all (see read-runs.ts readMany): one
   * entry per digest, in order, its bytes or the error that refused it. The bytes of a batch
   * share one buffer.
   */
  async getMany(digests: Digest[], opts: ReadOptions = {}): Promise<Array<Uint8Array | VmdnError>> {
    opts.signal?.throwIfAborted();
    const pool = this.codec();
    if (!pool) return Promise.all(digests.map((d) => this.get(d, opts).catch((e: unknown) => asVmdnError(e))));
    for (const d of digests) assertDigest(d);
    const groups: Digest[][] = [];
    // spread over the workers: a client waiting on a small read gets it from both at once
    const per = Math.min(GET_BATCH, Math.ceil(digests.length / pool.size));
    for (let i = 0; i < digests.length; i += per) groups.push(digests.slice(i, i + per));
    const rows = this.index.statPlaces(digests);
    const answers = await Promise.all(groups.map((g) => pool.run({ op: 'getMany', items: g.map((d) => this.placeOf(d, rows.get(d))), source: this.dir })));
    const out: Array<Uint8Array | VmdnError> = answers.flatMap((r) =>
      r.places!.map((p) => ('error' in p ? new VmdnError(p.error.code as ErrorCode, p.error.message, p.error.data) : r.data!.subarray(p.at, p.at + p.size))),
    );
    // not found where the index said: maybe repacked meanwhile (get() looks again)
    for (let i = 0; i < out.length; i++) if (isNotFound(out[i])) out[i] = await this.get(digests[i]!, opts).catch((e: unknown) => asVmdnError(e));
    return out;
  }

  async getEncoded(digest: Digest, opts: ReadOptions = {}): Promise<Uint8Array> {
    assertDigest(digest);
    opts.signal?.throwIfAborted();
    try {
      return await this.again([digest], (place) => this.readEncoded(place(digest)));
    } catch (err) {
      throw this.notFound(err, digest);
    }
  }

  /**
   * Decode, verify and write an object straight into a file at `offset`, in a
   * worker: the fast path for raw export (see DiskWriter.directTarget).
   * Returns the object's size. Call releaseTarget(outPath) when done.
   */
  copyTo(digest: Digest, outPath: string, offset: number): Promise<number> {
    return this.copy(digest, { outPath, offset });
  }

  /**
   * copyTo into a descriptor the caller opened (and closes once every copy into it is done).
   * With `length`, an object of another size is refused before anything is written.
   */
  copyToFd(digest: Digest, fd: number, offset: number, length?: number): Promise<number> {
    return this.copy(digest, { fd, offset, length });
  }

  /**
   * copyTo for many objects in one trip to a worker (into `outPath`, or the caller's `fd`): each is
   * refused before it is written unless it has its `length`. Objects that follow each other in the
   * file are best given in that order (they are written as one run). Resolves to the bytes placed.
   */
  async copyRuns(items: Array<{ digest: Digest; offset: number; length: number }>, to: { outPath?: string; fd?: number }): Promise<number> {
    const pool = this.codec();
    if (!pool) throw new VmdnError('E_INTERNAL', 'copying into a file needs codec workers');
    const digests = items.map((it) => assertDigest(it.digest));
    return this.again(digests, async (place) => {
      const sent = items.map((it) => ({ ...place(it.digest), offset: it.offset, length: it.length }));
      return (await pool.run({ op: 'copyRuns', items: sent, source: this.dir, ...to })).size!;
    });
  }

  /** copyRuns for a whole image, batched and scheduled here (copy-all.ts): the fast path of a raw export. */
  async copyAll(items: CopyItem[], to: { outPath?: string; fd?: number }, opts: CopyAllOptions = {}): Promise<number> {
    const pool = this.codec();
    if (!pool) throw new VmdnError('E_INTERNAL', 'copying into a file needs codec workers');
    return copyAll(this, pool, items, to, opts);
  }

  /** An image's objects, decoded in the workers into reused buffers, to `each` in order (ordered-reads.ts): the read path of a non-raw export. */
  async readInOrder(items: OrderedItem[], each: (i: number, bytes: Uint8Array) => void | Promise<void>, opts: OrderedOptions = {}): Promise<void> {
    const pool = this.codec();
    if (!pool) {
      for (let i = 0; i < items.length; i++) await each(i, await this.get(items[i]!.digest, opts));
      return;
    }
    return readInOrder(this, pool, items, each, opts);
  }

  private async copy(digest: Digest, to: { outPath?: string; fd?: number; offset: number; length?: number }): Promise<number> {
    assertDigest(digest);
    const pool = this.codec();
    if (!pool) throw new VmdnError('E_INTERNAL', 'copying into a file needs codec workers');
    try {
      return await this.again([digest], async (place) => (await pool.run({ op: 'copy', ...place(digest), source: this.dir, ...to })).size!);
    } catch (err) {
      throw this.notFound(err, digest);
    }
  }

  /** Read objects ahead into the page cache (prefetch.ts). */
  async prefetch(digests: Iterable<Digest>, opts: ReadOptions & { maxBytes?: number } = {}): Promise<void> {
    const it = digests[Symbol.iterator]();
    const places: Iterator<Placed> = { next: () => {
      const r = it.next();
      return r.done ? r : { done: false, value: this.place(r.value) };
    } };
    await prefetchPlaces(places, opts);
  }

  async releaseTarget(outPath: string): Promise<void> {
    await this.pool?.broadcast({ op: 'release', outPath });
  }

  /** True when copyTo can be used. */
  get canCopyTo(): boolean {
    return (this.opts.workers ?? 2) > 0;
  }

  private notFound(err: unknown, digest: Digest): unknown {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as VmdnError).data?.errno === 'ENOENT') {
      return new VmdnError('E_NOT_FOUND', `object ${digest} not in store ${this.dir}`, { digest });
    }
    return err;
  }

  /** Object files actually on disk (the index may lag behind after a crash). */
  async *objectFiles(): AsyncIterable<{ digest: Digest; path: string }> {
    const root = path.join(this.dir, 'objects');
    for (const sub of (await fs.readdir(root)).sort()) {
      const dir = path.join(root, sub);
      let names: string[];
      try {
        names = await fs.readdir(dir);
      } catch {
        continue;
      }
      for (const n of names.sort()) yield { digest: n, path: path.join(dir, n) };
    }
  }

  /**
   * Re-hash one object in a worker, where the index says it is (`loose`: its
   * loose file, whatever the index says); resolves to its sizes or throws
   * E_CORRUPT_OBJECT (E_NOT_FOUND: no such file or pack).
   */
  async verifyObject(digest: Digest, o: { loose?: boolean } = {}): Promise<{ size: number; storedSize: number }> {
    if (!isDigest(digest)) throw new VmdnError('E_CORRUPT_OBJECT', `stray file ${digest} in objects/`, { digest });
    const place = o.loose ? { digest, objPath: this.objectPath(digest) } : this.place(digest);
    const pool = this.codec();
    if (pool) {
      const r = await pool.run({ op: 'verify', ...place, source: this.dir });
      return { size: r.size!, storedSize: r.storedSize! };
    }
    const enc = await this.readEncoded(place);
    return { size: decodeObject(digest, enc, this.dir).length, storedSize: enc.length };
  }
}

export function statOf(o: IndexedObject): ObjectStat {
  return { digest: o.digest, size: o.size, storedSize: o.storedSize };
}

function isNotFound(err: unknown): boolean {
  return err instanceof VmdnError && err.code === 'E_NOT_FOUND';
}
