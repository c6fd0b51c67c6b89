/**
 * Reads a vmdn store's index.db directly (after the vmdn process has exited)
 * to count what a target would fetch given the images it already holds.
 */
import Database from 'better-sqlite3';
import path from 'node:path';
import { dirSize, fileSize } from './measure.js';

export interface VmdnDelivery {
  /** stored (zstd) bytes of the chunk objects the target references and no held image does */
  chunkBytes: number;
  chunks: number;
  /** the target's manifest object (stored size) */
  manifestBytes: number;
  total: number;
  /** everything the target references, manifest included (a client holding nothing) */
  fullBytes: number;
}

/**
 * The SQL for one index layout. Two exist: the first (digests as hex TEXT,
 * manifest_refs(manifest, digest)) and the current one (digests as 32-byte
 * BLOBs with integer ids, manifest_refs(manifest_id, object_id)). Both keep
 * the name user_version, so the layout is told from the columns.
 */
interface Layout {
  /** image name -> the manifest's object key and stored size */
  manifest: string;
  /** count and stored bytes of the objects manifest ?1 references, except ?2 (itself) and those the held manifests reference */
  lacking: (held: number) => string;
  full: string;
}

function layout(db: Database.Database): Layout {
  const cols = new Set(db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('manifest_refs')").all().map((c) => c.name));
  const list = (n: number) => (n ? Array.from({ length: n }, () => '?').join(',') : 'NULL');
  if (cols.has('manifest_id') && cols.has('object_id')) {
    return {
      manifest: "SELECT o.id AS k, o.stored_size AS stored FROM images i JOIN objects o ON o.digest = i.manifest WHERE i.name = ? AND i.tag = 'latest'",
      lacking: (held) => `SELECT count(*) AS n, sum(o.stored_size) AS bytes FROM manifest_refs r JOIN objects o ON o.id = r.object_id
        WHERE r.manifest_id = ? AND r.object_id <> ?
          AND r.object_id NOT IN (SELECT object_id FROM manifest_refs WHERE manifest_id IN (${list(held)}))`,
      full: 'SELECT sum(o.stored_size) AS bytes FROM manifest_refs r JOIN objects o ON o.id = r.object_id WHERE r.manifest_id = ?',
    };
  }
  if (cols.has('manifest') && cols.has('digest')) {
    return {
      manifest: "SELECT o.digest AS k, o.stored_size AS stored FROM images i JOIN objects o ON o.digest = i.manifest WHERE i.name = ? AND i.tag = 'latest'",
      lacking: (held) => `SELECT count(*) AS n, sum(o.stored_size) AS bytes FROM manifest_refs r JOIN objects o ON o.digest = r.digest
        WHERE r.manifest = ? AND r.digest <> ?
          AND r.digest NOT IN (SELECT digest FROM manifest_refs WHERE manifest IN (${list(held)}))`,
      full: 'SELECT sum(o.stored_size) AS bytes FROM manifest_refs r JOIN objects o ON o.digest = r.digest WHERE r.manifest = ?',
    };
  }
  throw new Error(`unknown index layout: manifest_refs has columns ${[...cols].join(', ')}`);
}

export function vmdnDelivery(store: string, target: string, held: string[]): VmdnDelivery {
  const db = new Database(path.join(store, 'index.db'), { fileMustExist: true });
  try {
    const l = layout(db);
    const manifestOf = (name: string) => {
      const r = db.prepare<[string], { k: unknown; stored: number }>(l.manifest).get(name);
      if (!r) throw new Error(`no image ${name}:latest (or its manifest object) in the store`);
      return r;
    };
    const t = manifestOf(target);
    const h = held.map((n) => manifestOf(n).k);
    const lacking = db.prepare<unknown[], { n: number; bytes: number | null }>(l.lacking(h.length)).get(t.k, t.k, ...h)!;
    const full = db.prepare<unknown[], { bytes: number | null }>(l.full).get(t.k)!;
    const chunkBytes = lacking.bytes ?? 0;
    return { chunkBytes, chunks: lacking.n, manifestBytes: t.stored, total: chunkBytes + t.stored, fullBytes: full.bytes ?? 0 };
  } finally {
    db.close();
  }
}

export interface VmdnDisk {
  /** sum of file sizes under objects/ */
  objectFileBytes: number;
  objectFiles: number;
  /** index.db plus its -wal/-shm if present */
  indexBytes: number;
  /** objectFileBytes + indexBytes */
  total: number;
  /** allocated blocks of the whole store directory */
  diskBytes: number;
}

export async function vmdnDisk(store: string): Promise<VmdnDisk> {
  const objects = await dirSize(path.join(store, 'objects'));
  const indexBytes = (await Promise.all(['index.db', 'index.db-wal', 'index.db-shm'].map((f) => fileSize(path.join(store, f))))).reduce((a, b) => a + b, 0);
  const all = await dirSize(store);
  return { objectFileBytes: objects.fileBytes, objectFiles: objects.files, indexBytes, total: objects.fileBytes + indexBytes, diskBytes: all.diskBytes };
}

/** Digest (hex) and stored size of every object `target` references that no `held` image does (manifest included). */
export function lackingObjects(store: string, target: string, held: string[]): Array<{ digest: string; stored: number }> {
  const db = new Database(path.join(store, 'index.db'), { fileMustExist: true, readonly: true });
  try {
    const id = (name: string) => {
      const r = db.prepare<[string], { id: number }>("SELECT o.id FROM images i JOIN objects o ON o.digest = i.manifest WHERE i.name = ? AND i.tag = 'latest'").get(name);
      if (!r) throw new Error(`no image ${name}:latest in ${store}`);
      return r.id;
    };
    const t = id(target);
    const h = held.map(id);
    const list = h.length ? h.map(() => '?').join(',') : 'NULL';
    const rows = db.prepare<unknown[], { d: string; s: number }>(`SELECT lower(hex(o.digest)) AS d, o.stored_size AS s FROM objects o WHERE o.id = ? OR o.id IN (
        SELECT object_id FROM manifest_refs WHERE manifest_id = ? AND object_id NOT IN (SELECT object_id FROM manifest_refs WHERE manifest_id IN (${list})))`).all(t, t, ...h);
    return rows.map((r) => ({ digest: r.d, stored: r.s }));
  } finally {
    db.close();
  }
}

/** Stored bytes of all objects each image references, and of those also referenced by another image. */
export function sharedObjectBytes(store: string): { referenced: number; shared: number } {
  const db = new Database(path.join(store, 'index.db'), { fileMustExist: true, readonly: true });
  try {
    const r = db.prepare<[], { referenced: number; shared: number }>(`SELECT sum(o.stored_size * c.n) AS referenced, sum(CASE WHEN c.n > 1 THEN o.stored_size * c.n ELSE 0 END) AS shared
      FROM (SELECT object_id, count(*) AS n FROM manifest_refs GROUP BY object_id) c JOIN objects o ON o.id = c.object_id`).get()!;
    return { referenced: r.referenced ?? 0, shared: r.shared ?? 0 };
  } finally {
    db.close();
  }
}
