/**
 * The store's index (SQLite): which objects are present with their sizes,
 * which names point at which manifests, and which objects each manifest
 * references (for unique-bytes accounting and gc), and where each object's
 * bytes are (a pack and offset, or a loose file). Object bytes are written and
 * synced (beforeCommit: PackWriter.sync) before their rows, and image rows
 * last, in one transaction: a killed import leaves at worst unreferenced pack
 * bytes or files, which gc removes.
 *
 * Object rows are written behind (index-row-queue.ts); every other query
 * flushes the queue first. Every write transaction is IMMEDIATE, retried
 * while another process holds the lock (index-busy.ts). The tables and their
 * migrations: index-schema.ts; the SQL: index-statements.ts.
 *
 * The `leases` table is the store's reader/writer lock (lease.ts).
 */
import type Database from 'better-sqlite3';
import type { Digest } from '../digest.js';
import type { ImageRecord, ObjectStat } from '../types.js';
import { VmdnError } from '../../errors.js';
import { retryBusy, writeImmediate } from './index-busy.js';
import { ObjectRowQueue } from './index-row-queue.js';
import { openIndexDatabase } from './index-schema.js';
import { fromRow, key, prepareStatements, toImageRow, type IndexedObject, type LeaseKind, type LeaseRow, type Statements } from './index-statements.js';

/** Up to this many objects, statMany reads the whole (small) table instead of joining every digest asked for. */
const FEW_OBJECTS = 256;

export type { IndexedObject, LeaseKind, LeaseRow } from './index-statements.js';
export type ImageRow = ImageRecord;

export class StoreIndex {
  private readonly db: Database.Database;
  private readonly st: Statements;
  private readonly queue: ObjectRowQueue;
  /** Run before object rows are committed: makes the bytes they point at durable (PackWriter.sync). */
  beforeCommit: (() => void) | undefined;
  /** beforeCommit off the event loop (PackWriter.syncBehind), for the queue's own flushes; without it they call beforeCommit. */
  beforeCommitBehind: (() => Promise<void>) | undefined;

  constructor(file: string) {
    this.db = openIndexDatabase(file);
    this.st = prepareStatements(this.db);
    const insert = this.db.transaction((rows: IndexedObject[]) => {
      for (const o of rows) this.st.addObject.run(key(o.digest), o.size, o.storedSize, o.pack ?? null, o.offset ?? null);
    });
    const insertRows = (rows: IndexedObject[]) => retryBusy(() => insert.immediate(rows));
    this.queue = new ObjectRowQueue((rows) => {
      this.beforeCommit?.();
      insertRows(rows);
    }, () => (this.beforeCommitBehind && this.db.open ? {
      durable: this.beforeCommitBehind(),
      // a close while the sync ran: the rows stay uncommitted, as a kill would leave them
      insert: (rows) => (this.db.open ? insertRows(rows) : undefined),
    } : undefined));
  }

  /** Resolves once no queued flush runs behind. */
  settled(): Promise<void> {
    return this.queue.settled();
  }

  /** Run `fn` in an IMMEDIATE transaction, retried while the database stays busy. */
  private write<T>(fn: () => T): T {
    return writeImmediate(this.db, fn);
  }

  /** Insert the queued object rows in one transaction. */
  flush(): void {
    this.queue.flush();
  }

  /** Changes whenever another connection (another process on this store) has committed: its caches of the index may be stale. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  /** The image names (without tags) whose images need `digest`. */
  namesUsing(digest: Digest): string[] {
    this.flush();
    const k = key(digest);
    return this.st.namesUsing.all(k, k, k).map((r) => r.name);
  }

  getObject(digest: Digest): IndexedObject | undefined {
    const queued = this.queue.get(digest);
    if (queued) return queued;
    const r = this.st.getObject.get(key(digest));
    return r ? fromRow(r) : undefined;
  }
  /** Queue an object's row; a packed one's bytes are made durable (beforeCommit) before the row is committed. */
  addObject(o: IndexedObject): void {
    this.queue.add(o);
  }
  deleteObject(digest: Digest): void {
    this.flush();
    this.st.delObject.run(key(digest));
  }
  listObjects(): IndexedObject[] {
    this.flush();
    return this.st.listObjects.all().map(fromRow);
  }
  /** Rows (with their places) of those of `digests` indexed, queued rows included, without a flush (a read must not wait for an fdatasync). */
  statPlaces(digests: Iterable<Digest>): Map<Digest, IndexedObject> {
    const out = new Map<Digest, IndexedObject>();
    const ask: Digest[] = [];
    for (const d of digests) {
      const q = this.queue.get(d);
      if (q) out.set(d, q);
      else ask.push(d);
    }
    if (ask.length) for (const r of this.st.places.all(JSON.stringify(ask))) out.set(r.digest.toString('hex'), fromRow(r));
    return out;
  }
  /**
   * Where each of `digests` is, in order (queued rows included, no flush): its pack, offset and stored size,
   * or `undefined` when it is not indexed (a loose file of an older store, or no object). One query for a
   * whole image's chunks, repeats and all.
   */
  placesInOrder(digests: readonly Digest[]): Array<{ pack?: string; offset?: number; storedSize: number } | undefined> {
    const rows = this.st.placesInOrder.all(JSON.stringify(digests));
    return digests.map((d, i) => {
      const q = this.queue.get(d);
      if (q) return { pack: q.pack, offset: q.offset, storedSize: q.storedSize };
      const [pack, offset, storedSize] = rows[i]!;
      if (storedSize === null) return undefined;
      return pack === null ? { storedSize } : { pack, offset: offset!, storedSize };
    });
  }
  /** Per pack: its indexed objects' count and stored bytes (gc's repack decides by these). */
  packUse(): Map<string, { objects: number; bytes: number }> {
    this.flush();
    return new Map(this.st.packUse.all().map((r) => [r.pack, { objects: r.n, bytes: r.bytes }]));
  }
  /** The objects indexed in `pack`, in pack order. */
  objectsInPack(pack: string): IndexedObject[] {
    this.flush();
    return this.st.inPack.all(pack).map(fromRow);
  }
  /** Point objects at their copies in another pack, in one transaction (each only if it is still where `from` says). */
  movePacked(from: string, moves: Array<{ digest: Digest; pack: string; offset: number }>): void {
    this.flush();
    this.write(() => moves.forEach((m) => this.st.movePacked.run(m.pack, m.offset, key(m.digest), from)));
  }

  private id(digest: Digest): number {
    this.flush();
    const r = this.st.objectId.get(key(digest));
    if (!r) throw new VmdnError('E_STORE', `object ${digest.slice(0, 12)} is not in the store index`, { digest });
    return r.id;
  }

  /** Name an image: records the manifest's references and the name in one transaction. Every object must be indexed. */
  putImage(row: ImageRow, refs: Iterable<Digest>): void {
    this.flush();
    const wanted = [...new Set(refs)];
    this.write(() => {
      const m = this.id(row.manifest);
      if (this.st.hasRefs.get(m)!.n === 0 && this.st.addRefs.run(m, JSON.stringify(wanted)).changes !== wanted.length) {
        const have = this.presentObjects(wanted);
        const lacking = wanted.find((d) => !have.has(d))!;
        throw new VmdnError('E_STORE', `object ${lacking.slice(0, 12)} is not in the store index`, { digest: lacking });
      }
      this.st.putImage.run({ ...row, manifest: key(row.manifest) });
    });
  }
  /** Those of `digests` that are indexed, in one query. */
  presentObjects(digests: Iterable<Digest>): Set<Digest> {
    return new Set(this.statMany(digests).keys());
  }
  /** Stats of those of `digests` that are indexed, in one query. */
  statMany(digests: Iterable<Digest>): Map<Digest, ObjectStat> {
    this.flush();
    const list = [...digests];
    if (list.length === 0) return new Map();
    const few = list.length > FEW_OBJECTS ? this.fewObjects() : undefined;
    if (few) {
      const asked = new Set(list);
      return new Map([...few].filter(([d]) => asked.has(d)));
    }
    return new Map(this.st.statMany.all(JSON.stringify(list)).map((r) => {
      const digest = r.digest.toString('hex');
      return [digest, { digest, size: r.size, storedSize: r.stored_size }];
    }));
  }
  /**
   * Every object, when the store holds at most FEW_OBJECTS: a first pull into
   * an empty cache asks about a whole image's ~15,000 chunks while the cache
   * holds only the manifest, and the join of every digest asked for took ~50 ms
   * of the pull's start, where reading the few rows takes well under one.
   */
  private fewObjects(): Map<Digest, ObjectStat> | undefined {
    const rows = this.st.fewObjects.all(FEW_OBJECTS + 1);
    if (rows.length > FEW_OBJECTS) return undefined;
    return new Map(rows.map((r) => {
      const digest = r.digest.toString('hex');
      return [digest, { digest, size: r.size, storedSize: r.stored_size }];
    }));
  }
  /** The stored bytes of those of `digests` that are indexed (each counted once per time it is listed), in one query. */
  storedBytes(digests: Iterable<Digest>): number {
    this.flush();
    const list = [...digests];
    return list.length === 0 ? 0 : this.st.storedBytes.get(JSON.stringify(list))!.n;
  }
  getImage(name: string, tag: string): ImageRow | undefined {
    this.flush();
    const r = this.st.getImage.get(name, tag);
    return r ? toImageRow(r) : undefined;
  }
  listImages(): ImageRow[] {
    this.flush();
    return this.st.listImages.all().map(toImageRow);
  }
  removeImage(name: string, tag: string): boolean {
    this.flush();
    return this.write(() => {
      const n = this.st.delImage.run(name, tag).changes;
      this.st.dropDeadRefs.run();
      return n > 0;
    });
  }
  /** Every digest some named image needs (its manifest and the manifest's objects). */
  liveDigests(): Set<Digest> {
    this.flush();
    return new Set(this.st.liveDigests.all().map((r) => r.digest.toString('hex')));
  }
  /**
   * gc's delete: of `digests`, drop the index rows of those no named image
   * needs, re-checked in this transaction; returns those whose files may go
   * (rows dropped here, or never indexed).
   */
  deleteUnreferenced(digests: Digest[]): Digest[] {
    this.flush();
    return this.write(() => digests.filter((d) => {
      const k = key(d);
      if (this.st.isLive.get(k, k, k)!.n !== 0) return false;
      this.st.delObject.run(k);
      return true;
    }));
  }

  /** The boot profile object recorded on `manifest`, if any. */
  getProfile(manifest: Digest): Digest | undefined {
    return this.st.getProfile.get(key(manifest))?.profile.toString('hex');
  }
  /** Point `manifest` at a profile (replacing any older one, in one statement); the profile object must be indexed. */
  setProfile(manifest: Digest, profile: Digest): void {
    this.flush();
    this.write(() => {
      this.id(profile);
      this.st.putProfile.run(key(manifest), key(profile), new Date().toISOString());
    });
  }
  /** gc's first step: profiles of manifests no image names are let go (their objects become garbage). */
  dropUnnamedProfiles(): number {
    this.flush();
    return this.write(() => this.st.dropUnnamedProfiles.run().changes);
  }

  /** Queue a lease request (lease.ts); its id orders it among the others. */
  addLease(kind: LeaseKind, pid: number, procStart: string): number {
    return Number(this.write(() => this.st.addLease.run(kind, pid, procStart, new Date().toISOString()).lastInsertRowid));
  }
  leasesBefore(id: number): LeaseRow[] {
    return this.st.leasesBefore.all(id).map((r) => ({ id: r.id, kind: r.kind, pid: r.pid, procStart: r.proc_start, started: r.started }));
  }
  dropLeases(ids: number[]): void {
    // after close() (which released this store's leases first) there is nothing left to drop
    if (ids.length && this.db.open) this.write(() => ids.forEach((id) => this.st.dropLease.run(id)));
  }

  uniqueStoredBytes(manifest: Digest): number {
    const m = this.id(manifest);
    return this.st.uniqueStored.get(m, m)!.n ?? 0;
  }
  manifestStoredBytes(manifest: Digest): number {
    return this.st.manifestStored.get(this.id(manifest))!.n ?? 0;
  }
  totals(): { objects: number; size: number; stored: number } {
    this.flush();
    const t = this.st.totals.get()!;
    return { objects: t.objects, size: t.size ?? 0, stored: t.stored ?? 0 };
  }
  close(): void {
    try {
      this.flush();
    } finally {
      // fold the WAL back into the main file so a closed store is one compact file
      try {
        this.db.pragma('wal_checkpoint(TRUNCATE)');
      } catch {
        /* another process holds the database: it will checkpoint */
      }
      this.db.close();
    }
  }
}
