/**
 * The embedded default backend: objects (zstd frames) appended to pack files
 * (packs/, pack-file.ts), an SQLite index beside them saying where each is,
 * temp files in tmp/. Objects of stores from before packs are loose files
 * (objects/ab/abcdef...), still read; a store opened `loose` (the edge's
 * evicting cache) writes them that way too, so an eviction frees its bytes.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { CodecPool } from './codec-pool.js';
import { decodeObject, encodeObject, ZSTD_LEVEL } from '../codec.js';
import { objectPath, writeAtomic, type Placed } from './codec-worker.js';
import { sha256, assertDigest, isDigest, type Digest } from '../digest.js';
import { StoreIndex, type IndexedObject } from './sqlite-index.js';
import { PackWriter } from './pack-writer.js';
import { closePacks, preadInto } from './pack-reader.js';
import { packPath } from './pack-file.js';
import { prefetchPlaces } from './prefetch.js';
import { StoreLeases, type LeaseOptions } from './lease.js';
import type { BootProfiles, ImageStore, ObjectStat, PrunableStore, PutResult, ReadOptions, SideRecords, StoreTotals } from '../types.js';
import { LocalNames } from './local-names.js';
import { DirRecords } from './side-records.js';
import { asVmdnError, VmdnError, type ErrorCode } from '../../errors.js';
import { isProcessAlive } from '../../util/process.js';

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

export class LocalStore implements PrunableStore, ImageStore, SideRecords, StoreTotals, BootProfiles {
  readonly index: StoreIndex;
  readonly names: LocalNames;
  private readonly records: DirRecords;
  private pool: CodecPool | null = null;
  private readonly inflight = new Map<Digest, Promise<PutResult>>();
  private readonly level: number;
  private readonly leases: StoreLeases;
  readonly packs: PackWriter;

  private constructor(readonly dir: string, private readonly opts: LocalStoreOptions) {
    this.index = new StoreIndex(path.join(dir, 'index.db'));
    this.names = new LocalNames(this.index);
    this.records = new DirRecords(dir);
    this.tmpDir = path.join(dir, 'tmp');
    this.objectsDir = path.join(dir, 'objects');
    this.level = opts.level ?? ZSTD_LEVEL;
    this.leases = new StoreLeases(this.index, dir, opts.lease);
    this.packsDir = path.join(dir, 'packs');
    this.packs = new PackWriter(this.packsDir);
    // a row is committed only after the pack bytes it points at are durable
    this.index.beforeCommit = () => this.packs.sync();
  }

  static async open(dir: string, opts: LocalStoreOptions = {}): Promise<LocalStore> {
    try {
      await fs.mkdir(path.join(dir, 'objects'), { recursive: true });
      await fs.mkdir(path.join(dir, 'tmp'), { recursive: true });
    } catch (err) {
      throw new VmdnError('E_STORE', `cannot create store at ${dir}: ${(err as Error).message}`, { dir }, { cause: err });
    }
    return new LocalStore(dir, opts);
  }

  // fields, not getters that join on every call: they are read once per object
  readonly tmpDir: string;
  readonly objectsDir: string;
  readonly packsDir: string;

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

  private codec(): CodecPool | null {
    if (this.pool === null && (this.opts.workers ?? 2) > 0) this.pool = new CodecPool(this.opts.workers ?? 2);
    return this.pool;
  }

  async totals(): Promise<{ objects: number; size: number; stored: number }> {
    return this.index.totals();
  }

  async statMany(digests: Iterable<Digest>): Promise<Map<Digest, ObjectStat>> {
    return this.index.statMany(digests);
  }

  getRecord(kind: string, key: string): Promise<Uint8Array | undefined> {
    return this.records.getRecord(kind, key);
  }

  putRecord(kind: string, key: string, data: Uint8Array): Promise<void> {
    return this.records.putRecord(kind, key, data);
  }

  async getProfile(manifest: Digest): Promise<Digest | undefined> {
    return this.index.getProfile(manifest);
  }

  async setProfile(manifest: Digest, profile: Digest): Promise<void> {
    this.index.setProfile(manifest, profile);
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
    const pool = this.codec();
    try {
      return await this.again([digest], async (place) => {
        if (pool) return (await pool.run({ op: 'get', ...place(digest), source: this.dir })).data!;
        return decodeObject(digest, await this.readEncoded(place(digest)), this.dir);
      });
    } catch (err) {
      throw this.notFound(err, digest);
    }
  }

  /** An object's encoded bytes, read on this thread (a pack's stretch synchronously, as the servers read files). */
  private async readEncoded(p: Placed): Promise<Uint8Array> {
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

  put(data: Uint8Array, opts: { digest?: Digest } & ReadOptions = {}): Promise<PutResult> {
    const pool = this.codec();
    // with workers, hashing happens there too: SHA-256 is the import's most expensive step
    if (pool && !opts.digest) return this.encodeInWorker(pool, data).then((e) => this.keep(e.digest, e.encoded, e.size));
    const digest = opts.digest ?? sha256(data);
    const known = this.index.getObject(digest);
    if (known) return Promise.resolve({ ...statOf(known), added: false });
    const running = this.inflight.get(digest);
    if (running) return running.then((r) => ({ ...r, added: false }));
    const encoded = pool ? this.encodeInWorker(pool, data, digest).then((e) => e.encoded) : Promise.resolve(encodeObject(data, this.level));
    const p = encoded.then((enc) => this.keep(digest, enc, data.length)).finally(() => this.inflight.delete(digest));
    this.inflight.set(digest, p);
    return p;
  }

  private async encodeInWorker(pool: CodecPool, data: Uint8Array, digest?: Digest): Promise<{ digest: Digest; size: number; encoded: Uint8Array }> {
    // copy: the caller's buffer may be a view into a larger read buffer we must not transfer
    const copy = new Uint8Array(data.length);
    copy.set(data);
    const r = await pool.run({ op: 'put', digest, data: copy, level: this.level }, [copy.buffer]);
    return { digest: r.digest!, size: r.size!, encoded: r.encoded! };
  }

  /**
   * Keep an object's encoded bytes (encoded here, or verified already: a
   * pull-through cache's) unless it is indexed; of racing writers of one object
   * exactly one reports it added: the first to index it.
   */
  async keep(digest: Digest, encoded: Uint8Array, size: number): Promise<PutResult> {
    const known = this.index.getObject(digest);
    if (known) return { ...statOf(known), added: false };
    const at = this.opts.loose ? await this.writeLoose(digest, encoded) : this.packs.append(digest, encoded);
    if (this.index.getObject(digest)) return { digest, size, storedSize: encoded.length, added: false };
    this.index.addObject({ digest, size, storedSize: encoded.length, ...at });
    return { digest, size, storedSize: encoded.length, added: true };
  }

  private async writeLoose(digest: Digest, encoded: Uint8Array): Promise<{ pack?: string; offset?: number }> {
    await writeAtomic(this.objectPath(digest), this.tmpDir, encoded);
    return {};
  }

  async putEncoded(digest: Digest, encoded: Uint8Array): Promise<PutResult> {
    assertDigest(digest);
    const known = this.index.getObject(digest);
    if (known) return { ...statOf(known), added: false };
    // a copy: acceptEncoded takes its bytes away from the caller
    return this.acceptEncoded(digest, new Uint8Array(encoded), { source: 'upload' });
  }

  /**
   * Keep encoded bytes received from elsewhere (a download): decode and verify
   * them (E_CORRUPT_OBJECT naming `source`, nothing indexed), keep them, index
   * them; with `outPath`, also write the data into that file at every offset in
   * `offsets`, as copyTo does. With workers the decoding happens in one, so the
   * data never comes back to this thread. `encoded` is moved to the worker when
   * it owns its buffer: the caller must not use it afterwards.
   */
  async acceptEncoded(digest: Digest, encoded: Uint8Array, o: { source: string; outPath?: string; offsets?: number[] }): Promise<PutResult> {
    const [r] = await this.acceptEncodedMany([{ digest, encoded, offsets: o.offsets }], o);
    if (r instanceof Error) throw r;
    return r!;
  }

  /**
   * acceptEncoded for many objects in one trip to a worker (a batch response's
   * worth): each succeeds or fails on its own. Resolves to one entry per item, in
   * order: its result, or the error that refused it (nothing of it indexed).
   * Into packs the bytes are appended before the worker verifies them (they are
   * moved there): a refused object's bytes are garbage no row points at. Loose,
   * they are written only once verified.
   */
  async acceptEncodedMany(items: Array<{ digest: Digest; encoded: Uint8Array; offsets?: number[] }>, o: { source: string; outPath?: string }): Promise<Array<PutResult | VmdnError>> {
    for (const it of items) assertDigest(it.digest);
    const pool = this.codec();
    if (!pool && o.outPath) throw new VmdnError('E_INTERNAL', 'acceptEncoded into a file needs codec workers');
    const storedSizes = items.map((it) => it.encoded.length);
    const places = this.opts.loose ? [] : items.map((it) => this.packs.append(it.digest, it.encoded));
    const kept = this.opts.loose ? items.map((it) => new Uint8Array(it.encoded)) : [];
    let outcomes: Array<{ size: number } | VmdnError>;
    if (pool) {
      const transfer: ArrayBuffer[] = [];
      const sent = items.map((it) => {
        const e = it.encoded;
        // a small Buffer may be a slice of Node's shared pool: that one is copied, not moved
        const owns = e.byteOffset === 0 && e.byteLength === e.buffer.byteLength && e.buffer instanceof ArrayBuffer && !transfer.includes(e.buffer);
        const encoded = owns ? e : new Uint8Array(e);
        transfer.push(encoded.buffer as ArrayBuffer);
        return { digest: it.digest, encoded, offsets: it.offsets };
      });
      const r = await pool.run({ op: 'acceptMany', items: sent, source: o.source, outPath: o.outPath }, transfer);
      outcomes = r.outcomes!.map((out) => ('error' in out ? new VmdnError(out.error.code as ErrorCode, out.error.message, out.error.data) : out));
    } else {
      outcomes = items.map((it) => {
        try {
          return { size: decodeObject(it.digest, it.encoded, o.source).length };
        } catch (err) {
          return asVmdnError(err);
        }
      });
    }
    const results: Array<PutResult | VmdnError> = [];
    for (let i = 0; i < items.length; i++) {
      const out = outcomes[i]!;
      if (out instanceof Error) {
        results.push(out);
        continue;
      }
      const digest = items[i]!.digest;
      const at = this.opts.loose ? await this.writeLoose(digest, kept[i]!).catch((e: unknown) => asVmdnError(e)) : places[i]!;
      if (at instanceof Error) {
        results.push(at);
        continue;
      }
      const stat = { digest, size: out.size, storedSize: storedSizes[i]! };
      this.index.addObject({ ...stat, ...at });
      results.push({ ...stat, added: true });
    }
    return results;
  }

  /** Drop an object's row; a loose file goes too, a packed entry becomes garbage (gc's repack reclaims it). */
  async delete(digest: Digest): Promise<void> {
    assertDigest(digest);
    const row = this.index.getObject(digest);
    this.index.deleteObject(digest);
    if (row?.pack === undefined) await fs.rm(this.objectPath(digest), { force: true });
  }

  async *list(): AsyncIterable<ObjectStat> {
    for (const o of this.index.listObjects()) yield statOf(o);
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

  /** Remove temp files left by processes that no longer run (killed imports). */
  async cleanTmp(): Promise<number> {
    let n = 0;
    for (const name of await fs.readdir(this.tmpDir)) {
      const pid = Number(name.split('.').at(-2));
      if (Number.isInteger(pid) && pid !== process.pid && isProcessAlive(pid)) continue;
      if (pid === process.pid) continue;
      await fs.rm(path.join(this.tmpDir, name), { force: true });
      n++;
    }
    return n;
  }

  /**
   * Run `fn` holding the store's writer lease (shared with other writers, not
   * with gc): everything that adds objects and names them, so gc never deletes
   * an object between a writer's dedup against it and the name that keeps it.
   * Nests: a write within a write of the same store object joins it.
   */
  writing<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.leases.writing(fn, signal);
  }

  /** Run `fn` holding the store alone (gc): waits for running writers, new ones wait for it. */
  exclusive<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.leases.exclusive(fn, signal);
  }

  async close(): Promise<void> {
    // leases still held (a caller that closes mid-write) go now, not when the process exits
    this.leases.releaseAll();
    await this.pool?.close();
    this.pool = null;
    try {
      this.index.close(); // syncs the packs before the last rows go in
    } finally {
      this.packs.close();
      closePacks();
    }
  }
}

function statOf(o: IndexedObject): ObjectStat {
  return { digest: o.digest, size: o.size, storedSize: o.storedSize };
}

function isNotFound(err: unknown): boolean {
  return err instanceof VmdnError && err.code === 'E_NOT_FOUND';
}
