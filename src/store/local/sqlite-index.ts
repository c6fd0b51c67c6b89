/**
 * The store's index (SQLite): which objects are present with their sizes,
 * which names point at which manifests, and which objects each manifest
 * references (for unique-bytes accounting and gc), and where each object's
 * bytes are (a pack and offset, or a loose file). Object bytes are written and
 * synced (beforeCommit: PackWriter.sync) before their rows, and image rows
 * last, in one transaction: a killed import leaves at worst unreferenced pack
 * bytes or files, which gc removes.
 *
 * Object rows are written behind: addObject queues the row and one
 * transaction every ROW_DELAY_MS (or per ROW_BATCH rows) inserts the queue.
 * A commit per row was a third of a pull's main-thread time; lagging rows
 * only widen the window the paragraph above already allows. Every other
 * query flushes the queue first, so readers in this process never see it.
 *
 * Every write transaction is IMMEDIATE: a deferred one that read first cannot
 * upgrade once another process has committed (SQLITE_BUSY at once, no busy
 * wait), which a busy store turned into failed imports. A write still busy
 * after the busy timeout is retried a few times before it fails.
 *
 * The `leases` table is the store's reader/writer lock (lease.ts).
 */
import Database from 'better-sqlite3';
import type { Digest } from '../digest.js';
import type { ImageRecord, ObjectStat } from '../types.js';
import { asVmdnError, VmdnError } from '../../errors.js';

/**
 * 3: objects may live in pack files (columns pack, pack_offset; NULL pack = a
 * loose file objects/xx/DIGEST, all a schema 2 store has). 2: digests as BLOBs,
 * integer reference pairs. 1 was a pre-release layout (hex TEXT).
 */
const SCHEMA_VERSION = 3;
/** Queued object rows that force a flush without waiting for the timer. */
const ROW_BATCH = 1024;
/** Longest a queued row waits; short enough that another process sees it promptly. */
const ROW_DELAY_MS = 50;
/** SQLite's own wait for a lock another process holds, per attempt. */
const BUSY_TIMEOUT_MS = 15_000;
/** Attempts of a write transaction that stays busy beyond the busy timeout. */
const BUSY_ATTEMPTS = 4;

export type ImageRow = ImageRecord;

/** An index row: the object's sizes and, when packed, where its frame is (pack-file.ts). */
export interface IndexedObject extends ObjectStat {
  pack?: string;
  offset?: number;
}

/** A row of the leases table: the store lock (lease.ts). */
export type LeaseKind = 'write' | 'gc';

export interface LeaseRow {
  id: number;
  kind: LeaseKind;
  pid: number;
  /** The process's start time (Linux /proc), to tell a reused pid from its first owner; '' elsewhere. */
  procStart: string;
  started: string;
}


export class StoreIndex {
  private readonly db: Database.Database;
  private readonly st: ReturnType<StoreIndex['prepare']>;
  private readonly pending = new Map<Digest, IndexedObject>();
  /** Run before object rows are committed: makes the bytes they point at durable (PackWriter.sync). */
  beforeCommit: (() => void) | undefined;
  private flushTimer: NodeJS.Timeout | undefined;
  /** A failed background flush, rethrown by the next call (a timer has no caller to tell). */
  private flushError: unknown;
  private readonly insertRows: (rows: IndexedObject[]) => void;

  constructor(file: string) {
    // the timeout is set at open: switching to WAL below may itself wait for a lock
    this.db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.migrate();
    this.st = this.prepare();
    const insert = this.db.transaction((rows: IndexedObject[]) => {
      for (const o of rows) this.st.addObject.run(key(o.digest), o.size, o.storedSize, o.pack ?? null, o.offset ?? null);
    });
    this.insertRows = (rows) => retryBusy(() => insert.immediate(rows));
  }

  /** Run `fn` in an IMMEDIATE transaction, retried while the database stays busy. */
  private write<T>(fn: () => T): T {
    const tx = this.db.transaction(fn);
    return retryBusy(() => tx.immediate());
  }

  /** Insert the queued object rows in one transaction. */
  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.flushError !== undefined) {
      const err = this.flushError;
      this.flushError = undefined;
      // a full disk stays an I/O error (exit 6), not a damaged store
      const code = asVmdnError(err).code === 'E_IO' ? 'E_IO' : 'E_STORE';
      throw new VmdnError(code, `store index write failed: ${(err as Error).message}`, {}, { cause: err });
    }
    if (this.pending.size === 0) return;
    const rows = [...this.pending.values()];
    this.beforeCommit?.();
    this.insertRows(rows);
    // only after the commit: a failed one keeps the rows visible and queued for the next try
    for (const o of rows) if (this.pending.get(o.digest) === o) this.pending.delete(o.digest);
  }

  private migrate(): void {
    const v = this.db.pragma('user_version', { simple: true }) as number;
    if (v === SCHEMA_VERSION) return this.migrateAdded();
    if (v === 2) {
      // a v2 store's objects are all loose files: NULL pack says so
      this.write(() => this.db.exec(`ALTER TABLE objects ADD COLUMN pack TEXT; ALTER TABLE objects ADD COLUMN pack_offset INTEGER;
        PRAGMA user_version = ${SCHEMA_VERSION};`));
      return this.migrateAdded();
    }
    if (v > SCHEMA_VERSION) throw new VmdnError('E_STORE', `store index schema ${v} is newer than this vmdn (${SCHEMA_VERSION}): upgrade vmdn`, { schema: v });
    if (v !== 0) throw new VmdnError('E_STORE', `store index schema ${v} is from a pre-release vmdn: import into a new store`, { schema: v });
    // Digests are 32-byte BLOBs and references are integer pairs: the index
    // stays a small fraction of the chunk data (casync's .caibx is the yardstick).
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS objects (id INTEGER PRIMARY KEY, digest BLOB NOT NULL UNIQUE, size INTEGER NOT NULL, stored_size INTEGER NOT NULL,
        pack TEXT, pack_offset INTEGER);
      CREATE TABLE IF NOT EXISTS images (
        name TEXT NOT NULL, tag TEXT NOT NULL, manifest BLOB NOT NULL, created TEXT NOT NULL,
        virtual_size INTEGER NOT NULL, allocated_size INTEGER NOT NULL, data_size INTEGER NOT NULL, format TEXT NOT NULL,
        PRIMARY KEY (name, tag)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS manifest_refs (manifest_id INTEGER NOT NULL, object_id INTEGER NOT NULL, PRIMARY KEY (manifest_id, object_id)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS manifest_refs_object ON manifest_refs (object_id);
      PRAGMA user_version = ${SCHEMA_VERSION};
    `);
    this.migrateAdded();
  }

  private migrateAdded(): void {
    this.migrateLeases();
    this.migrateProfiles();
  }

  /**
   * Boot profiles (docs/format.md): manifest -> the profile object recorded
   * on it, one per manifest, replaced by a newer recording. Added to schema 2
   * as the leases were; an older vmdn ignores the table (and its gc would
   * drop the profile objects: they are only hints).
   */
  private migrateProfiles(): void {
    if (this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'profiles'").get()) return;
    this.write(() => this.db.exec(`CREATE TABLE IF NOT EXISTS profiles (
      manifest BLOB PRIMARY KEY, profile BLOB NOT NULL, created TEXT NOT NULL) WITHOUT ROWID`));
  }

  /**
   * Added to schema 2 without a version bump: stores made before it gain the
   * table on first open, and an older vmdn still opens the store (it ignores
   * the table, and so the lock: mixing versions on one store is unsupported).
   */
  private migrateLeases(): void {
    if (this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'leases'").get()) return;
    this.write(() => this.db.exec(`CREATE TABLE IF NOT EXISTS leases (
      id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, pid INTEGER NOT NULL, proc_start TEXT NOT NULL, started TEXT NOT NULL)`));
  }

  private prepare() {
    const d = this.db;
    const live = `SELECT r.object_id AS id FROM manifest_refs r JOIN objects m ON m.id = r.manifest_id JOIN images i ON i.manifest = m.digest`;
    return {
      getObject: d.prepare<[Buffer], Row>('SELECT digest, size, stored_size, pack, pack_offset FROM objects WHERE digest = ?'),
      objectId: d.prepare<[Buffer], { id: number }>('SELECT id FROM objects WHERE digest = ?'),
      // a second copy (another process wrote it too) is as good as the first: the later row wins
      addObject: d.prepare(`INSERT INTO objects (digest, size, stored_size, pack, pack_offset) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (digest) DO UPDATE SET size = excluded.size, stored_size = excluded.stored_size, pack = excluded.pack, pack_offset = excluded.pack_offset`),
      movePacked: d.prepare<[string, number, Buffer, string]>('UPDATE objects SET pack = ?, pack_offset = ? WHERE digest = ? AND pack = ?'),
      packUse: d.prepare<[], { pack: string; n: number; bytes: number }>('SELECT pack, count(*) AS n, sum(stored_size) AS bytes FROM objects WHERE pack IS NOT NULL GROUP BY pack'),
      inPack: d.prepare<[string], Row>('SELECT digest, size, stored_size, pack, pack_offset FROM objects WHERE pack = ? ORDER BY pack_offset'),
      delObject: d.prepare('DELETE FROM objects WHERE digest = ?'),
      listObjects: d.prepare<[], Row>('SELECT digest, size, stored_size, pack, pack_offset FROM objects ORDER BY digest'),
      getImage: d.prepare<[string, string], Record<string, unknown>>('SELECT * FROM images WHERE name = ? AND tag = ?'),
      listImages: d.prepare<[], Record<string, unknown>>('SELECT * FROM images ORDER BY name, tag'),
      putImage: d.prepare(`INSERT OR REPLACE INTO images (name, tag, manifest, created, virtual_size, allocated_size, data_size, format)
        VALUES (@name, @tag, @manifest, @created, @virtualSize, @allocatedSize, @dataSize, @format)`),
      delImage: d.prepare('DELETE FROM images WHERE name = ? AND tag = ?'),
      // set-based: a point query costs ~15 us through better-sqlite3 here, tens of thousands of them add up to seconds
      addRefs: d.prepare<[number, string]>(`INSERT OR IGNORE INTO manifest_refs (manifest_id, object_id)
        SELECT ?, o.id FROM json_each(?) j JOIN objects o ON o.digest = unhex(j.value)`),
      present: d.prepare<[string], { digest: Buffer }>('SELECT o.digest FROM json_each(?) j JOIN objects o ON o.digest = unhex(j.value)'),
      // in input order, one row per digest (NULLs for one not indexed), and no digest read back: half statPlaces' cost for a whole image
      placesInOrder: d.prepare<[string], [string | null, number | null, number | null]>(`SELECT o.pack, o.pack_offset, o.stored_size
        FROM json_each(?) j LEFT JOIN objects o ON o.digest = unhex(j.value) ORDER BY j.key`).raw(),
      places: d.prepare<[string], Row>('SELECT o.digest, o.size, o.stored_size, o.pack, o.pack_offset FROM json_each(?) j JOIN objects o ON o.digest = unhex(j.value)'),
      statMany: d.prepare<[string], { digest: Buffer; size: number; stored_size: number }>('SELECT o.digest, o.size, o.stored_size FROM json_each(?) j JOIN objects o ON o.digest = unhex(j.value)'),
      hasRefs: d.prepare<[number], { n: number }>('SELECT count(*) AS n FROM manifest_refs WHERE manifest_id = ?'),
      liveDigests: d.prepare<[], { digest: Buffer }>(`SELECT o.digest FROM objects o WHERE o.id IN (${live}) UNION SELECT manifest FROM images
        UNION SELECT p.profile FROM profiles p JOIN images i ON i.manifest = p.manifest`),
      dropDeadRefs: d.prepare(`DELETE FROM manifest_refs WHERE manifest_id NOT IN (SELECT m.id FROM objects m JOIN images i ON i.manifest = m.digest)`),
      // bytes only this manifest references, among manifests that some image names
      uniqueStored: d.prepare<[number, number], { n: number | null }>(`SELECT sum(o.stored_size) AS n FROM manifest_refs r JOIN objects o ON o.id = r.object_id
        WHERE r.manifest_id = ? AND NOT EXISTS (SELECT 1 FROM manifest_refs r2 JOIN objects m ON m.id = r2.manifest_id JOIN images i ON i.manifest = m.digest
          WHERE r2.object_id = r.object_id AND r2.manifest_id <> ?)`),
      manifestStored: d.prepare<[number], { n: number | null }>(`SELECT sum(o.stored_size) AS n FROM manifest_refs r JOIN objects o ON o.id = r.object_id WHERE r.manifest_id = ?`),
      totals: d.prepare<[], { objects: number; size: number | null; stored: number | null }>('SELECT count(*) AS objects, sum(size) AS size, sum(stored_size) AS stored FROM objects'),
      // gc's re-check, inside its delete transaction: no named image needs the object (any more)
      isLive: d.prepare<[Buffer, Buffer, Buffer], { n: number }>(`SELECT EXISTS (SELECT 1 FROM images WHERE manifest = ?)
        OR EXISTS (SELECT 1 FROM objects o JOIN manifest_refs r ON r.object_id = o.id JOIN objects m ON m.id = r.manifest_id JOIN images i ON i.manifest = m.digest WHERE o.digest = ?)
        OR EXISTS (SELECT 1 FROM profiles p JOIN images i ON i.manifest = p.manifest WHERE p.profile = ?) AS n`),
      // the names whose image needs the object (as manifest, referenced object or boot profile): who may see it (net/server/visibility.ts)
      namesUsing: d.prepare<[Buffer, Buffer, Buffer], { name: string }>(`SELECT name FROM images WHERE manifest = ?
        UNION SELECT i.name FROM objects o JOIN manifest_refs r ON r.object_id = o.id JOIN objects m ON m.id = r.manifest_id JOIN images i ON i.manifest = m.digest WHERE o.digest = ?
        UNION SELECT i.name FROM profiles p JOIN images i ON i.manifest = p.manifest WHERE p.profile = ?`),
      getProfile: d.prepare<[Buffer], { profile: Buffer }>('SELECT profile FROM profiles WHERE manifest = ?'),
      putProfile: d.prepare<[Buffer, Buffer, string]>('INSERT OR REPLACE INTO profiles (manifest, profile, created) VALUES (?, ?, ?)'),
      dropUnnamedProfiles: d.prepare('DELETE FROM profiles WHERE manifest NOT IN (SELECT manifest FROM images)'),
      addLease: d.prepare<[string, number, string, string]>('INSERT INTO leases (kind, pid, proc_start, started) VALUES (?, ?, ?, ?)'),
      leasesBefore: d.prepare<[number], { id: number; kind: LeaseKind; pid: number; proc_start: string; started: string }>('SELECT id, kind, pid, proc_start, started FROM leases WHERE id < ? ORDER BY id'),
      dropLease: d.prepare<[number]>('DELETE FROM leases WHERE id = ?'),
    };
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
    const queued = this.pending.get(digest);
    if (queued) return { ...queued };
    const r = this.st.getObject.get(key(digest));
    return r ? fromRow(r) : undefined;
  }
  /** Queue an object's row; a packed one's bytes are made durable (beforeCommit) before the row is committed. */
  addObject(o: IndexedObject): void {
    this.pending.set(o.digest, { digest: o.digest, size: o.size, storedSize: o.storedSize, pack: o.pack, offset: o.offset });
    if (this.pending.size >= ROW_BATCH) this.flush();
    else this.flushTimer ??= setTimeout(() => {
      try {
        this.flush();
      } catch (err) {
        this.flushError = err;
      }
    }, ROW_DELAY_MS);
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
      const q = this.pending.get(d);
      if (q) out.set(d, { ...q });
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
      const q = this.pending.get(d);
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
    this.flush();
    const list = [...digests];
    if (list.length === 0) return new Set();
    return new Set(this.st.present.all(JSON.stringify(list)).map((r) => r.digest.toString('hex')));
  }
  /** Stats of those of `digests` that are indexed, in one query. */
  statMany(digests: Iterable<Digest>): Map<Digest, ObjectStat> {
    this.flush();
    const list = [...digests];
    if (list.length === 0) return new Map();
    return new Map(this.st.statMany.all(JSON.stringify(list)).map((r) => {
      const digest = r.digest.toString('hex');
      return [digest, { digest, size: r.size, storedSize: r.stored_size }];
    }));
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

const SLEEP = new Int32Array(new SharedArrayBuffer(4));

/**
 * SQLite already waited BUSY_TIMEOUT_MS inside the call; wait some more between
 * attempts (synchronously: the caller is a synchronous transaction), then give
 * up with a message that says what is going on.
 */
function retryBusy<T>(fn: () => T): T {
  for (let attempt = 1; ; attempt++) {
    try {
      return fn();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== 'string' || !code.startsWith('SQLITE_BUSY')) throw err;
      if (attempt >= BUSY_ATTEMPTS) {
        throw new VmdnError('E_STORE', `store index stayed locked by another process for ${Math.round((attempt * BUSY_TIMEOUT_MS) / 1000)} s`, { sqlite: code }, { cause: err });
      }
      Atomics.wait(SLEEP, 0, 0, 100 * attempt);
    }
  }
}

interface Row {
  digest: Buffer;
  size: number;
  stored_size: number;
  pack: string | null;
  pack_offset: number | null;
}

function fromRow(r: Row): IndexedObject {
  const o: IndexedObject = { digest: r.digest.toString('hex'), size: r.size, storedSize: r.stored_size };
  if (r.pack !== null) {
    o.pack = r.pack;
    o.offset = r.pack_offset!;
  }
  return o;
}

function key(digest: Digest): Buffer {
  return Buffer.from(digest, 'hex');
}

function toImageRow(r: Record<string, unknown>): ImageRow {
  return {
    name: r.name as string,
    tag: r.tag as string,
    manifest: (r.manifest as Buffer).toString('hex'),
    created: r.created as string,
    virtualSize: r.virtual_size as number,
    allocatedSize: r.allocated_size as number,
    dataSize: r.data_size as number,
    format: r.format as string,
  };
}
