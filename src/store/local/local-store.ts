/**
 * The embedded default backend: objects as zstd files in a directory
 * (objects/ab/abcdef...), an SQLite index beside them, temp files in tmp/.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { CodecPool } from './codec-pool.js';
import { decodeObject, encodeObject, ZSTD_LEVEL } from '../codec.js';
import { objectPath, writeAtomic } from './codec-worker.js';
import { sha256, assertDigest, isDigest, type Digest } from '../digest.js';
import { StoreIndex } from './sqlite-index.js';
import { StoreLeases, type LeaseOptions } from './lease.js';
import type { BootProfiles, EncodedFiles, ImageStore, ObjectStat, PrunableStore, PutResult, ReadOptions, SideRecords, StoreTotals } from '../types.js';
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
}

const PREFETCH_LANES = 4;
/** Objects per getMany message: ~0.5 MiB of the corpus's chunks, so a 2 MiB read keeps both workers busy. */
const GET_BATCH = 16;

export class LocalStore implements PrunableStore, ImageStore, SideRecords, EncodedFiles, StoreTotals, BootProfiles {
  readonly index: StoreIndex;
  readonly names: LocalNames;
  private readonly records: DirRecords;
  private pool: CodecPool | null = null;
  private readonly inflight = new Map<Digest, Promise<PutResult>>();
  private readonly level: number;
  private readonly leases: StoreLeases;

  private constructor(readonly dir: string, private readonly opts: LocalStoreOptions) {
    this.index = new StoreIndex(path.join(dir, 'index.db'));
    this.names = new LocalNames(this.index);
    this.records = new DirRecords(dir);
    this.tmpDir = path.join(dir, 'tmp');
    this.objectsDir = path.join(dir, 'objects');
    this.level = opts.level ?? ZSTD_LEVEL;
    this.leases = new StoreLeases(this.index, dir, opts.lease);
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

  objectPath(digest: Digest): string {
    return objectPath(this.objectsDir, digest);
  }

  private codec(): CodecPool | null {
    if (this.pool === null && (this.opts.workers ?? 2) > 0) this.pool = new CodecPool(this.opts.workers ?? 2);
    return this.pool;
  }

  encodedFile(digest: Digest): string {
    assertDigest(digest);
    return this.objectPath(digest);
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
    return this.index.getObject(digest);
  }

  async get(digest: Digest, opts: ReadOptions = {}): Promise<Uint8Array> {
    assertDigest(digest);
    opts.signal?.throwIfAborted();
    const pool = this.codec();
    try {
      if (pool) return (await pool.run({ op: 'get', digest, objPath: this.objectPath(digest), source: this.dir })).data!;
      return decodeObject(digest, await fs.readFile(this.objectPath(digest)), this.dir);
    } catch (err) {
      throw this.notFound(err, digest);
    }
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
    const answers = await Promise.all(groups.map((g) => pool.run({ op: 'getMany', items: g.map((digest) => ({ digest, objPath: this.objectPath(digest) })), source: this.dir })));
    return answers.flatMap((r) =>
      r.places!.map((p) => ('error' in p ? new VmdnError(p.error.code as ErrorCode, p.error.message, p.error.data) : r.data!.subarray(p.at, p.at + p.size))),
    );
  }

  async getEncoded(digest: Digest, opts: ReadOptions = {}): Promise<Uint8Array> {
    assertDigest(digest);
    opts.signal?.throwIfAborted();
    try {
      return await fs.readFile(this.objectPath(digest));
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
    const sent = items.map((it) => ({ digest: assertDigest(it.digest), objPath: this.objectPath(it.digest), offset: it.offset, length: it.length }));
    return (await pool.run({ op: 'copyRuns', items: sent, source: this.dir, ...to })).size!;
  }

  private async copy(digest: Digest, to: { outPath?: string; fd?: number; offset: number; length?: number }): Promise<number> {
    assertDigest(digest);
    const pool = this.codec();
    if (!pool) throw new VmdnError('E_INTERNAL', 'copying into a file needs codec workers');
    try {
      return (await pool.run({ op: 'copy', digest, objPath: this.objectPath(digest), source: this.dir, ...to })).size!;
    } catch (err) {
      throw this.notFound(err, digest);
    }
  }

  /**
   * Read object files (in the given order, a few at a time, into scratch
   * buffers that are thrown away) so they sit in the page cache when a worker
   * decodes them: the workers read one object at a time each, which leaves a
   * cold disk idle between requests. Best effort: missing objects are skipped
   * (whoever needs them reports it); stops early when `signal` aborts.
   */
  async prefetch(digests: Iterable<Digest>, opts: ReadOptions & { maxBytes?: number } = {}): Promise<void> {
    const it = digests[Symbol.iterator]();
    let bytes = 0;
    const lane = async () => {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (let r = it.next(); !r.done && !opts.signal?.aborted && bytes < (opts.maxBytes ?? Infinity); r = it.next()) {
        let h: fs.FileHandle | undefined;
        try {
          h = await fs.open(this.objectPath(r.value), 'r');
          for (let n = buf.length; n === buf.length; bytes += n) n = (await h.read(buf, 0, buf.length, null)).bytesRead;
        } catch {
          /* best effort */
        } finally {
          await h?.close().catch(() => {});
        }
      }
    };
    await Promise.all(Array.from({ length: PREFETCH_LANES }, lane));
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
    if (pool && !opts.digest) return this.record(this.writeInWorker(pool, data));
    const digest = opts.digest ?? sha256(data);
    const known = this.index.getObject(digest);
    if (known) return Promise.resolve({ ...known, added: false });
    const running = this.inflight.get(digest);
    if (running) return running.then((r) => ({ ...r, added: false }));
    const p = this.record(pool ? this.writeInWorker(pool, data, digest) : this.writeHere(digest, data)).finally(() => this.inflight.delete(digest));
    this.inflight.set(digest, p);
    return p;
  }

  private async writeInWorker(pool: CodecPool, data: Uint8Array, digest?: Digest): Promise<PutResult> {
    // copy: the caller's buffer may be a view into a larger read buffer we must not transfer
    const copy = new Uint8Array(data.length);
    copy.set(data);
    const r = await pool.run({ op: 'put', digest, data: copy, objectsDir: this.objectsDir, tmpDir: this.tmpDir, level: this.level }, [copy.buffer]);
    return { digest: r.digest!, size: r.size!, storedSize: r.storedSize!, added: r.added! };
  }

  private async writeHere(digest: Digest, data: Uint8Array): Promise<PutResult> {
    const enc = encodeObject(data, this.level);
    await writeAtomic(this.objectPath(digest), this.tmpDir, enc);
    return { digest, size: data.length, storedSize: enc.length, added: true };
  }

  /**
   * Index the object; of racing writers of one object exactly one reports it
   * added: the first to index it. (Not the worker's own flag: with two workers
   * the one that found the other's file may answer first.)
   */
  private async record(p: Promise<PutResult>): Promise<PutResult> {
    const r = await p;
    if (this.index.getObject(r.digest)) return { ...r, added: false };
    this.index.addObject({ digest: r.digest, size: r.size, storedSize: r.storedSize });
    return { ...r, added: true };
  }

  async putEncoded(digest: Digest, encoded: Uint8Array): Promise<PutResult> {
    assertDigest(digest);
    const known = this.index.getObject(digest);
    if (known) return { ...known, added: false };
    // a copy: acceptEncoded takes its bytes away from the caller
    return this.acceptEncoded(digest, new Uint8Array(encoded), { source: 'upload' });
  }

  /**
   * Keep encoded bytes received from elsewhere (a download): decode and verify
   * them (E_CORRUPT_OBJECT naming `source`, nothing kept), write them by atomic
   * rename, index them; with `outPath`, also write the data into that file at
   * every offset in `offsets`, as copyTo does. With workers all of it happens in
   * one, so the bytes are decoded once and never come back to this thread.
   * `encoded` is moved to the worker when it owns its buffer: the caller must
   * not use it afterwards.
   */
  async acceptEncoded(digest: Digest, encoded: Uint8Array, o: { source: string; outPath?: string; offsets?: number[] }): Promise<PutResult> {
    assertDigest(digest);
    const storedSize = encoded.length;
    const pool = this.codec();
    let size: number;
    if (pool) {
      // a small Buffer may be a slice of Node's shared pool: that one is copied, not moved
      const owns = encoded.byteOffset === 0 && encoded.byteLength === encoded.buffer.byteLength && encoded.buffer instanceof ArrayBuffer;
      const bytes = owns ? encoded : new Uint8Array(encoded);
      const { objectsDir, tmpDir } = this;
      const r = await pool.run({ op: 'accept', digest, encoded: bytes, source: o.source, objectsDir, tmpDir, outPath: o.outPath, offsets: o.offsets }, [bytes.buffer as ArrayBuffer]);
      size = r.size!;
    } else {
      if (o.outPath) throw new VmdnError('E_INTERNAL', 'acceptEncoded into a file needs codec workers');
      size = decodeObject(digest, encoded, o.source).length;
      await writeAtomic(this.objectPath(digest), this.tmpDir, encoded);
    }
    const stat = { digest, size, storedSize };
    this.index.addObject(stat);
    return { ...stat, added: true };
  }

  /**
   * acceptEncoded for many objects in one trip to a worker (a batch response's
   * worth): each is decoded, verified, kept and placed exactly as acceptEncoded
   * does, and succeeds or fails on its own. Resolves to one entry per item, in
   * order: its result, or the error that refused it (nothing of it kept).
   * The items' buffers are moved to the worker when they own them.
   */
  async acceptEncodedMany(items: Array<{ digest: Digest; encoded: Uint8Array; offsets?: number[] }>, o: { source: string; outPath?: string }): Promise<Array<PutResult | VmdnError>> {
    const pool = this.codec();
    if (!pool) return Promise.all(items.map((it) => this.acceptEncoded(it.digest, it.encoded, { ...o, offsets: it.offsets }).catch((e: unknown) => asVmdnError(e))));
    const transfer: ArrayBuffer[] = [];
    const sent = items.map((it) => {
      assertDigest(it.digest);
      const e = it.encoded;
      // a small Buffer may be a slice of Node's shared pool: that one is copied, not moved
      const owns = e.byteOffset === 0 && e.byteLength === e.buffer.byteLength && e.buffer instanceof ArrayBuffer && !transfer.includes(e.buffer);
      const encoded = owns ? e : new Uint8Array(e);
      transfer.push(encoded.buffer as ArrayBuffer);
      return { digest: it.digest, encoded, offsets: it.offsets };
    });
    const storedSizes = items.map((it) => it.encoded.length);
    const { objectsDir, tmpDir } = this;
    const r = await pool.run({ op: 'acceptMany', items: sent, source: o.source, objectsDir, tmpDir, outPath: o.outPath }, transfer);
    return r.outcomes!.map((out, i) => {
      if ('error' in out) return new VmdnError(out.error.code as ErrorCode, out.error.message, out.error.data);
      const stat = { digest: items[i]!.digest, size: out.size, storedSize: storedSizes[i]! };
      this.index.addObject(stat);
      return { ...stat, added: true };
    });
  }

  async delete(digest: Digest): Promise<void> {
    assertDigest(digest);
    this.index.deleteObject(digest);
    await fs.rm(this.objectPath(digest), { force: true });
  }

  async *list(): AsyncIterable<ObjectStat> {
    yield* this.index.listObjects();
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

  /** Re-hash one object file in a worker; resolves to its sizes or throws E_CORRUPT_OBJECT. */
  async verifyObject(digest: Digest): Promise<{ size: number; storedSize: number }> {
    if (!isDigest(digest)) throw new VmdnError('E_CORRUPT_OBJECT', `stray file ${digest} in objects/`, { digest });
    const pool = this.codec();
    if (pool) {
      const r = await pool.run({ op: 'verify', digest, objPath: this.objectPath(digest), source: this.dir });
      return { size: r.size!, storedSize: r.storedSize! };
    }
    const enc = await fs.readFile(this.objectPath(digest));
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
    this.index.close();
  }
}

