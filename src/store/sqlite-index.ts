/**
 * The store's index (SQLite): which objects are present with their sizes,
 * which names point at which manifests, and which objects each manifest
 * references (for unique-bytes accounting and gc). Object files are written
 * before their rows, and image rows last, in one transaction: a killed import
 * leaves at worst unreferenced files, which gc removes.
 */
import Database from 'better-sqlite3';
import type { Digest } from './digest.js';
import type { ObjectStat } from './types.js';

const SCHEMA_VERSION = 1;

export interface ImageRow {
  name: string;
  tag: string;
  manifest: Digest;
  created: string;
  virtualSize: number;
  allocatedSize: number;
  dataSize: number;
  format: string;
}

export class StoreIndex {
  private readonly db: Database.Database;
  private readonly st: ReturnType<StoreIndex['prepare']>;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 10000');
    this.migrate();
    this.st = this.prepare();
  }

  private migrate(): void {
    const v = this.db.pragma('user_version', { simple: true }) as number;
    if (v === SCHEMA_VERSION) return;
    if (v > SCHEMA_VERSION) throw new Error(`store index schema ${v} is newer than this vmdn (${SCHEMA_VERSION})`);
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS objects (digest TEXT PRIMARY KEY, size INTEGER NOT NULL, stored_size INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS images (
        name TEXT NOT NULL, tag TEXT NOT NULL, manifest TEXT NOT NULL, created TEXT NOT NULL,
        virtual_size INTEGER NOT NULL, allocated_size INTEGER NOT NULL, data_size INTEGER NOT NULL, format TEXT NOT NULL,
        PRIMARY KEY (name, tag)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS manifest_refs (manifest TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (manifest, digest)) WITHOUT ROWID;
      CREATE INDEX IF NOT EXISTS manifest_refs_digest ON manifest_refs (digest);
      PRAGMA user_version = ${SCHEMA_VERSION};
    `);
  }

  private prepare() {
    const d = this.db;
    return {
      getObject: d.prepare<[string], { size: number; stored_size: number }>('SELECT size, stored_size FROM objects WHERE digest = ?'),
      addObject: d.prepare('INSERT OR REPLACE INTO objects (digest, size, stored_size) VALUES (?, ?, ?)'),
      delObject: d.prepare('DELETE FROM objects WHERE digest = ?'),
      listObjects: d.prepare<[], { digest: string; size: number; stored_size: number }>('SELECT digest, size, stored_size FROM objects ORDER BY digest'),
      getImage: d.prepare<[string, string], Record<string, unknown>>('SELECT * FROM images WHERE name = ? AND tag = ?'),
      listImages: d.prepare<[], Record<string, unknown>>('SELECT * FROM images ORDER BY name, tag'),
      putImage: d.prepare(`INSERT OR REPLACE INTO images (name, tag, manifest, created, virtual_size, allocated_size, data_size, format)
        VALUES (@name, @tag, @manifest, @created, @virtualSize, @allocatedSize, @dataSize, @format)`),
      delImage: d.prepare('DELETE FROM images WHERE name = ? AND tag = ?'),
      addRef: d.prepare('INSERT OR IGNORE INTO manifest_refs (manifest, digest) VALUES (?, ?)'),
      hasRefs: d.prepare<[string], { n: number }>('SELECT count(*) AS n FROM manifest_refs WHERE manifest = ?'),
      liveDigests: d.prepare<[], { digest: string }>(`SELECT DISTINCT r.digest FROM manifest_refs r JOIN images i ON i.manifest = r.manifest
        UNION SELECT manifest FROM images`),
      dropDeadRefs: d.prepare('DELETE FROM manifest_refs WHERE manifest NOT IN (SELECT manifest FROM images)'),
      // bytes only this manifest references, among manifests that some image names
      uniqueStored: d.prepare<[string, string], { n: number | null }>(`SELECT sum(o.stored_size) AS n FROM manifest_refs r JOIN objects o ON o.digest = r.digest
        WHERE r.manifest = ? AND NOT EXISTS (SELECT 1 FROM manifest_refs r2 JOIN images i ON i.manifest = r2.manifest
          WHERE r2.digest = r.digest AND r2.manifest <> ?)`),
      manifestStored: d.prepare<[string], { n: number | null }>(`SELECT sum(o.stored_size) AS n FROM manifest_refs r JOIN objects o ON o.digest = r.digest WHERE r.manifest = ?`),
      totals: d.prepare<[], { objects: number; size: number | null; stored: number | null }>('SELECT count(*) AS objects, sum(size) AS size, sum(stored_size) AS stored FROM objects'),
    };
  }

  getObject(digest: Digest): ObjectStat | undefined {
    const r = this.st.getObject.get(digest);
    return r ? { digest, size: r.size, storedSize: r.stored_size } : undefined;
  }
  addObject(o: ObjectStat): void {
    this.st.addObject.run(o.digest, o.size, o.storedSize);
  }
  deleteObject(digest: Digest): void {
    this.st.delObject.run(digest);
  }
  listObjects(): ObjectStat[] {
    return this.st.listObjects.all().map((r) => ({ digest: r.digest, size: r.size, storedSize: r.stored_size }));
  }

  /** Name an image: records the manifest's references and the name in one transaction. */
  putImage(row: ImageRow, refs: Iterable<Digest>): void {
    this.db.transaction(() => {
      if (this.st.hasRefs.get(row.manifest)!.n === 0) for (const d of refs) this.st.addRef.run(row.manifest, d);
      this.st.putImage.run(row);
    })();
  }
  getImage(name: string, tag: string): ImageRow | undefined {
    const r = this.st.getImage.get(name, tag);
    return r ? toImageRow(r) : undefined;
  }
  listImages(): ImageRow[] {
    return this.st.listImages.all().map(toImageRow);
  }
  removeImage(name: string, tag: string): boolean {
    return this.db.transaction(() => {
      const n = this.st.delImage.run(name, tag).changes;
      this.st.dropDeadRefs.run();
      return n > 0;
    })();
  }
  /** Every digest some named image needs (its manifest and the manifest's objects). */
  liveDigests(): Set<Digest> {
    return new Set(this.st.liveDigests.all().map((r) => r.digest));
  }
  uniqueStoredBytes(manifest: Digest): number {
    return this.st.uniqueStored.get(manifest, manifest)!.n ?? 0;
  }
  manifestStoredBytes(manifest: Digest): number {
    return this.st.manifestStored.get(manifest)!.n ?? 0;
  }
  totals(): { objects: number; size: number; stored: number } {
    const t = this.st.totals.get()!;
    return { objects: t.objects, size: t.size ?? 0, stored: t.stored ?? 0 };
  }
  close(): void {
    this.db.close();
  }
}

function toImageRow(r: Record<string, unknown>): ImageRow {
  return {
    name: r.name as string,
    tag: r.tag as string,
    manifest: r.manifest as string,
    created: r.created as string,
    virtualSize: r.virtual_size as number,
    allocatedSize: r.allocated_size as number,
    dataSize: r.data_size as number,
    format: r.format as string,
  };
}
