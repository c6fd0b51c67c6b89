/** Counting what a local store holds, for tests that check what was fetched or cached. */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { LocalStore } from '../../src/store/local/local-store.js';

/** Number of objects in the local store at `dir` (chunks, manifests, everything it lists). */
export async function countObjects(dir: string): Promise<number> {
  const s = await LocalStore.open(dir);
  try {
    let n = 0;
    for await (const _o of s.list()) n++;
    return n;
  } finally {
    await s.close();
  }
}

/**
 * Objects a local store at `dir` holds durably (index rows: a packed object is
 * indexed only once its bytes are synced), read while another process may be
 * writing it; 0 before the store exists or while its index is locked.
 */
export function indexedObjects(dir: string): number {
  const file = path.join(dir, 'index.db');
  if (!fs.existsSync(file)) return 0;
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM objects').get() as { n: number }).n;
    } finally {
      db.close();
    }
  } catch {
    return 0;
  }
}

/** Whether the local store at `dir` indexes `digest`. */
export function indexesObject(dir: string, digest: string): boolean {
  const db = new Database(path.join(dir, 'index.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT 1 FROM objects WHERE digest = ?').get(Buffer.from(digest, 'hex')) !== undefined;
  } finally {
    db.close();
  }
}
