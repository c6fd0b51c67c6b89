/**
 * The store index under contention and in trouble: a store made before the
 * lease table still opens; gc's delete re-checks references in its own
 * transaction; a write waits out another process's write lock; a full disk
 * is E_IO.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import Database from 'better-sqlite3';
import { LocalStore } from '../../src/store/local/local-store.js';
import { StoreIndex } from '../../src/store/local/sqlite-index.js';
import { collectGarbage } from '../../src/images/maintenance.js';
import { asVmdnError } from '../../src/errors.js';
import { sha256 } from '../../src/store/digest.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';

const digest = (n: number) => sha256(Buffer.from(`object ${n}`));
const image = (manifest: string) => ({ name: 'i', tag: 't', manifest, created: 'now', virtualSize: 1, allocatedSize: 1, dataSize: 1, format: 'raw' });

describe('store index locking', () => {
  it('a store made before the lease table opens, gains it, and gc works', async () => {
    const t = tmpDir();
    try {
      // the schema-2 layout as the previous release created it
      const db = new Database(path.join(t.dir, 'index.db'));
      db.exec(`
        CREATE TABLE objects (id INTEGER PRIMARY KEY, digest BLOB NOT NULL UNIQUE, size INTEGER NOT NULL, stored_size INTEGER NOT NULL);
        CREATE TABLE images (name TEXT NOT NULL, tag TEXT NOT NULL, manifest BLOB NOT NULL, created TEXT NOT NULL,
          virtual_size INTEGER NOT NULL, allocated_size INTEGER NOT NULL, data_size INTEGER NOT NULL, format TEXT NOT NULL, PRIMARY KEY (name, tag)) WITHOUT ROWID;
        CREATE TABLE manifest_refs (manifest_id INTEGER NOT NULL, object_id INTEGER NOT NULL, PRIMARY KEY (manifest_id, object_id)) WITHOUT ROWID;
        CREATE INDEX manifest_refs_object ON manifest_refs (object_id);
        PRAGMA user_version = 2;`);
      db.close();
      const store = await LocalStore.open(t.dir, { workers: 0 });
      try {
        const kept = await store.put(prng(1, 5000));
        const gone = await store.put(prng(2, 5000));
        store.index.putImage(image(kept.digest), [kept.digest]);
        const r = await collectGarbage(store);
        assert.equal(r.removedObjects, 1);
        assert.ok(await store.has(kept.digest));
        assert.ok(!(await store.has(gone.digest)));
        assert.ok(!fs.existsSync(store.objectPath(gone.digest)));
      } finally {
        await store.close();
      }
      const after = new Database(path.join(t.dir, 'index.db'), { readonly: true });
      // migrated to layout 3 (pack columns; its rows, loose files, unchanged)
      assert.equal(after.pragma('user_version', { simple: true }), 3);
      assert.deepEqual(after.prepare('SELECT count(*) AS n FROM leases').get(), { n: 0 });
      after.close();
    } finally {
      t.cleanup();
    }
  });

  it('gc\'s delete keeps rows an image names by the time it deletes', () => {
    const t = tmpDir();
    const index = new StoreIndex(path.join(t.dir, 'index.db'));
    try {
      for (const n of [1, 2, 3]) index.addObject({ digest: digest(n), size: 1, storedSize: 1 });
      // 1 is a manifest naming 2; 3 is unreferenced (as a snapshot taken before the image was named would think of all three)
      index.putImage(image(digest(1)), [digest(2), digest(1)]);
      assert.deepEqual(index.deleteUnreferenced([digest(1), digest(2), digest(3), digest(4)]), [digest(3), digest(4)]);
      assert.ok(index.getObject(digest(1)) && index.getObject(digest(2)));
      assert.equal(index.getObject(digest(3)), undefined);
    } finally {
      index.close();
      t.cleanup();
    }
  });

  it('naming an image waits for another process\'s write instead of failing "database is locked"', async () => {
    const t = tmpDir();
    const file = path.join(t.dir, 'index.db');
    const index = new StoreIndex(file);
    try {
      for (const n of [1, 2]) index.addObject({ digest: digest(n), size: 1, storedSize: 1 });
      index.flush();
      // another process holds the write lock for a while, then commits a row
      const script = `const D = require(${JSON.stringify(createRequire(import.meta.url).resolve('better-sqlite3'))});
        const db = new D(${JSON.stringify(file)}); db.exec('BEGIN IMMEDIATE');
        db.prepare('INSERT INTO objects (digest, size, stored_size) VALUES (randomblob(32), 1, 1)').run();
        process.stdout.write('locked\\n'); setTimeout(() => { db.exec('COMMIT'); db.close(); }, 800);`;
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
      const exited = new Promise((r) => child.on('exit', r));
      index.putImage(image(digest(1)), [digest(2), digest(1)]);
      await exited;
      assert.equal(index.getImage('i', 't')?.manifest, digest(1));
    } finally {
      index.close();
      t.cleanup();
    }
  });

  it('a full disk under the index is E_IO (exit 6), not an internal error', () => {
    const t = tmpDir();
    const db = new Database(path.join(t.dir, 'full.db'));
    try {
      db.exec('CREATE TABLE x (b BLOB)');
      // the page limit stands in for a full file system: SQLite reports both as SQLITE_FULL
      db.pragma('max_page_count = 3');
      let caught: unknown;
      try {
        db.prepare('INSERT INTO x VALUES (randomblob(100000))').run();
      } catch (err) {
        caught = err;
      }
      assert.equal((caught as { code?: string }).code, 'SQLITE_FULL');
      assert.equal(asVmdnError(caught).code, 'E_IO');
      assert.equal(asVmdnError(caught).exitCode, 6);
    } finally {
      db.close();
      t.cleanup();
    }
  });
});
