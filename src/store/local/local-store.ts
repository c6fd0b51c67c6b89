/**
 * The embedded default backend: objects (zstd frames) appended to pack files
 * (packs/, pack-file.ts), an SQLite index beside them saying where each is,
 * temp files in tmp/. Objects of stores from before packs are loose files
 * (objects/ab/abcdef...), still read; a store opened `loose` (the edge's
 * evicting cache) writes them that way too, so an eviction frees its bytes.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { CodecPool } from './codec-pool.js';
import { encodeObject, ZSTD_LEVEL } from '../codec.js';
import { writeAtomic } from './codec-worker.js';
import { packFrames, storedSizesOf, verifyHere, verifyInWorker, type AcceptedItem, type PackPlace, type VerifyOutcome } from './accept-many.js';
import { sha256, assertDigest, type Digest } from '../digest.js';
import { PackWriter } from './pack-writer.js';
import { closePacks } from './pack-reader.js';
import { packPath } from './pack-file.js';
import { readStretches, type PackedFrame } from './stretch-reads.js';
import { LocalReads, statOf, type LocalStoreOptions } from './local-reads.js';
import { StoreLeases } from './lease.js';
import type { IndexedObject } from './sqlite-index.js';
import type { BootProfiles, EncodedMany, ImageStore, ObjectStat, PrunableStore, PutResult, ReadOptions, SideRecords, StoreTotals } from '../types.js';
import { LocalNames } from './local-names.js';
import { DirRecords } from './side-records.js';
import { asVmdnError, VmdnError } from '../../errors.js';
import { isProcessAlive } from '../../util/process.js';

export type { LocalStoreOptions };

export class LocalStore extends LocalReads implements EncodedMany, PrunableStore, ImageStore, SideRecords, StoreTotals, BootProfiles {
  readonly names: LocalNames;
  private readonly records: DirRecords;
  private readonly inflight = new Map<Digest, Promise<PutResult>>();
  private readonly level: number;
  private readonly leases: StoreLeases;
  readonly packs: PackWriter;

  private constructor(dir: string, opts: LocalStoreOptions) {
    super(dir, opts);
    this.names = new LocalNames(this.index);
    this.records = new DirRecords(dir);
    this.level = opts.level ?? ZSTD_LEVEL;
    this.leases = new StoreLeases(this.index, dir, opts.lease);
    this.packs = new PackWriter(this.packsDir);
    // a row is committed only after the pack bytes it points at are durable
    this.index.beforeCommit = () => this.packs.sync();
    this.index.beforeCommitBehind = () => this.packs.syncBehind();
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


  put(data: Uint8Array, opts: { digest?: Digest } & ReadOptions = {}): Promise<PutResult> {
    const pool = this.codec();
    // with workers, hashing happens there too: SHA-256 is the import's most expensive step
    if (pool && !opts.digest) {
      return this.encodeInWorker(pool, data, undefined, this.indexFile).then((e) => {
        if (e.encoded) return this.keep(e.digest, e.encoded, e.size);
        // the worker found it indexed; should the row be gone since, compress here
        const known = this.index.getObject(e.digest);
        return known ? { ...statOf(known), added: false } : this.keep(e.digest, encodeObject(data, this.level), data.length);
      });
    }
    const digest = opts.digest ?? sha256(data);
    const known = this.index.getObject(digest);
    if (known) return Promise.resolve({ ...statOf(known), added: false });
    const running = this.inflight.get(digest);
    if (running) return running.then((r) => ({ ...r, added: false }));
    const encoded = pool ? this.encodeInWorker(pool, data, digest).then((e) => e.encoded!) : Promise.resolve(encodeObject(data, this.level));
    const p = encoded.then((enc) => this.keep(digest, enc, data.length)).finally(() => this.inflight.delete(digest));
    this.inflight.set(digest, p);
    return p;
  }

  private async encodeInWorker(pool: CodecPool, data: Uint8Array, digest?: Digest, index?: string): Promise<{ digest: Digest; size: number; encoded?: Uint8Array }> {
    // copy: the caller's buffer may be a view into a larger read buffer we must not transfer
    const copy = new Uint8Array(data.length);
    copy.set(data);
    const r = await pool.run({ op: 'put', digest, data: copy, level: this.level, index }, [copy.buffer]);
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
   * With `whole`, the items' buffers hold nothing but these items' bytes (a
   * batch group's arena): each is moved to the worker once, items sharing it.
   */
  async acceptEncodedMany(items: AcceptedItem[], o: { source: string; outPath?: string; whole?: boolean }): Promise<Array<PutResult | VmdnError>> {
    for (const it of items) assertDigest(it.digest);
    const pool = this.codec();
    if (!pool && o.outPath) throw new VmdnError('E_INTERNAL', 'acceptEncoded into a file needs codec workers');
    if (this.opts.loose) return this.acceptLoose(items, o, pool);
    // read before the bytes move to a worker (a moved buffer reads as empty here)
    const storedSizes = storedSizesOf(items);
    const places = this.packs.appendMany(packFrames(items));
    // while the workers boot, loose objects that need not be written into a file are verified here (a pull's
    // manifest, before its first batch): ~0.15 s sooner. A batch group (`whole`) still moves to them.
    const here = !pool || (!pool.ready && !o.outPath && !o.whole);
    const outcomes = here ? verifyHere(items, o.source) : await verifyInWorker(pool, items, o);
    return this.indexVerified(items, outcomes, storedSizes, places);
  }

  /** Index what the workers verified (bytes already in packs at `places`); synchronous, one row shape. */
  private indexVerified(items: AcceptedItem[], outcomes: VerifyOutcome[], storedSizes: number[], places: PackPlace[]): Array<PutResult | VmdnError> {
    const results: Array<PutResult | VmdnError> = [];
    for (let i = 0; i < items.length; i++) {
      const out = outcomes[i]!;
      if (out instanceof VmdnError) {
        results.push(out);
        continue;
      }
      const digest = items[i]!.digest;
      const at = places[i]!;
      this.index.addObject({ digest, size: out.size, storedSize: storedSizes[i]!, pack: at.pack, offset: at.offset });
      results.push({ digest, size: out.size, storedSize: storedSizes[i]!, added: true });
    }
    return results;
  }

  /** acceptEncodedMany into loose files: each written only once verified. */
  private async acceptLoose(items: AcceptedItem[], o: { source: string; outPath?: string; whole?: boolean }, pool: CodecPool | null): Promise<Array<PutResult | VmdnError>> {
    const kept = items.map((it) => new Uint8Array(it.encoded));
    const outcomes = pool ? await verifyInWorker(pool, items, o) : verifyHere(items, o.source);
    const results: Array<PutResult | VmdnError> = [];
    for (let i = 0; i < items.length; i++) {
      const out = outcomes[i]!;
      if (out instanceof VmdnError) {
        results.push(out);
        continue;
      }
      const digest = items[i]!.digest;
      const at = await this.writeLoose(digest, kept[i]!).catch((e: unknown) => asVmdnError(e));
      if (at instanceof Error) {
        results.push(at);
        continue;
      }
      const stat = { digest, size: out.size, storedSize: kept[i]!.length };
      this.index.addObject({ ...stat, ...at });
      results.push({ ...stat, added: true });
    }
    return results;
  }

  /** statMany with each object's place (EncodedMany): a server's batch looks its objects up once. */
  async statPlaced(digests: Iterable<Digest>): Promise<Map<Digest, ObjectStat>> {
    return this.index.statPlaces(digests);
  }

  /**
   * Stored bytes of many objects, unverified, for a server to send as they are
   * (EncodedMany): one index query, one read per stretch of adjacent pack
   * entries. Loose objects, and packed ones whose pack moved meanwhile, are
   * read one by one as getEncoded does; undefined for one not held.
   */
  async encodedMany(digests: Digest[], placed?: Map<Digest, ObjectStat>): Promise<Array<Uint8Array | undefined>> {
    const rows = (placed as Map<Digest, IndexedObject> | undefined) ?? this.index.statPlaces(digests);
    const frames: PackedFrame[] = [];
    for (const d of digests) {
      const r = rows.get(d);
      if (r?.pack !== undefined) frames.push({ digest: d, path: packPath(this.packsDir, r.pack), offset: r.offset!, length: r.storedSize });
    }
    const read = new Map(readStretches(frames, this.dir).map((b, i) => [frames[i]!.digest, b]));
    return Promise.all(digests.map(async (d) => {
      const b = read.get(d);
      if (b instanceof Uint8Array) return b;
      if (!rows.has(d)) return undefined;
      return this.getEncoded(d).catch((err: unknown) => {
        if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') return undefined;
        throw err;
      });
    }));
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
    await this.index.settled();
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
