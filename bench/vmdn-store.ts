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

const manifestOf = (db: Database.Database, name: string): string => {
  const r = db.prepare<[string], { manifest: string }>("SELECT manifest FROM images WHERE name = ? AND tag = 'latest'").get(name);
  if (!r) throw new Error(`no image ${name}:latest in the store`);
  return r.manifest;
};

export function vmdnDelivery(store: string, target: string, held: string[]): VmdnDelivery {
  const db = new Database(path.join(store, 'index.db'), { fileMustExist: true });
  try {
    const t = manifestOf(db, target);
    const h = held.map((n) => manifestOf(db, n));
    const heldList = h.map(() => '?').join(',') || "''";
    // manifest_refs lists each manifest's distinct objects, the manifest itself included
    const q = db.prepare<string[], { n: number; bytes: number | null }>(`
      SELECT count(*) AS n, sum(o.stored_size) AS bytes
      FROM manifest_refs r JOIN objects o ON o.digest = r.digest
      WHERE r.manifest = ? AND r.digest <> ?
        AND r.digest NOT IN (SELECT digest FROM manifest_refs WHERE manifest IN (${heldList}))`);
    const lacking = q.get(t, t, ...h)!;
    const full = db.prepare<[string], { bytes: number | null }>('SELECT sum(o.stored_size) AS bytes FROM manifest_refs r JOIN objects o ON o.digest = r.digest WHERE r.manifest = ?').get(t)!;
    const man = db.prepare<[string], { stored_size: number }>('SELECT stored_size FROM objects WHERE digest = ?').get(t);
    if (!man) throw new Error(`manifest ${t} of ${target} has no object row`);
    const chunkBytes = lacking.bytes ?? 0;
    return { chunkBytes, chunks: lacking.n, manifestBytes: man.stored_size, total: chunkBytes + man.stored_size, fullBytes: full.bytes ?? 0 };
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
