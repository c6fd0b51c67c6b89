/**
 * The store index's tables: opening the database, creating a new store's
 * schema, and bringing an older store's schema up to date.
 */
import Database from 'better-sqlite3';
import { VmdnError } from '../../errors.js';
import { BUSY_TIMEOUT_MS, writeImmediate } from './index-busy.js';

/**
 * 3: objects may live in pack files (columns pack, pack_offset; NULL pack = a
 * loose file objects/xx/DIGEST, all a schema 2 store has). 2: digests as BLOBs,
 * integer reference pairs. 1 was a pre-release layout (hex TEXT).
 */
const SCHEMA_VERSION = 3;

/** Open (or create) the index database in WAL mode, its schema current. */
export function openIndexDatabase(file: string): Database.Database {
  // the timeout is set at open: switching to WAL below may itself wait for a lock
  const db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  migrate(db);
  return db;
}

function migrate(db: Database.Database): void {
  const v = db.pragma('user_version', { simple: true }) as number;
  if (v === SCHEMA_VERSION) return migrateAdded(db);
  if (v === 2) {
    // a v2 store's objects are all loose files: NULL pack says so
    writeImmediate(db, () => db.exec(`ALTER TABLE objects ADD COLUMN pack TEXT; ALTER TABLE objects ADD COLUMN pack_offset INTEGER;
      PRAGMA user_version = ${SCHEMA_VERSION};`));
    return migrateAdded(db);
  }
  if (v > SCHEMA_VERSION) throw new VmdnError('E_STORE', `store index schema ${v} is newer than this vmdn (${SCHEMA_VERSION}): upgrade vmdn`, { schema: v });
  if (v !== 0) throw new VmdnError('E_STORE', `store index schema ${v} is from a pre-release vmdn: import into a new store`, { schema: v });
  // Digests are 32-byte BLOBs and references are integer pairs: the index
  // stays a small fraction of the chunk data (casync's .caibx is the yardstick).
  db.exec(`
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
  migrateAdded(db);
}

function migrateAdded(db: Database.Database): void {
  migrateLeases(db);
  migrateProfiles(db);
}

/**
 * Boot profiles (docs/format.md): manifest -> the profile object recorded
 * on it, one per manifest, replaced by a newer recording. Added to schema 2
 * as the leases were; an older vmdn ignores the table (and its gc would
 * drop the profile objects: they are only hints).
 */
function migrateProfiles(db: Database.Database): void {
  if (db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'profiles'").get()) return;
  writeImmediate(db, () => db.exec(`CREATE TABLE IF NOT EXISTS profiles (
    manifest BLOB PRIMARY KEY, profile BLOB NOT NULL, created TEXT NOT NULL) WITHOUT ROWID`));
}

/**
 * Added to schema 2 without a version bump: stores made before it gain the
 * table on first open, and an older vmdn still opens the store (it ignores
 * the table, and so the lock: mixing versions on one store is unsupported).
 */
function migrateLeases(db: Database.Database): void {
  if (db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'leases'").get()) return;
  writeImmediate(db, () => db.exec(`CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, pid INTEGER NOT NULL, proc_start TEXT NOT NULL, started TEXT NOT NULL)`));
}
