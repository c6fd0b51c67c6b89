/**
 * The local store's pack files (store layout 2, docs/format.md): new objects
 * are appended to a pack (no file per object), older stores' loose files are
 * still read, rows are committed only after the pack is synced, gc rewrites
 * packs that are mostly garbage, and the pack scanner stands up to damage.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { LocalStore } from '../../src/store/local/local-store.js';
import { PackWriter } from '../../src/store/local/pack-writer.js';
import { ENTRY_HEADER, packPath, scanPack } from '../../src/store/local/pack-file.js';
import { closePacks } from '../../src/store/local/pack-reader.js';
import { repack } from '../../src/store/local/pack-gc.js';
import { collectGarbage, verifyStore } from '../../src/images/maintenance.js';
import { encodeObject } from '../../src/store/codec.js';
import { sha256 } from '../../src/store/digest.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';

const image = (manifest: string) => ({ name: 'i', tag: 't', manifest, created: 'now', virtualSize: 1, allocatedSize: 1, dataSize: 1, format: 'raw' });
const packs = (dir: string) => (fs.existsSync(path.join(dir, 'packs')) ? fs.readdirSync(path.join(dir, 'packs')).filter((n) => n.endsWith('.pack')) : []);
const looseFiles = (dir: string) => fs.readdirSync(path.join(dir, 'objects'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;

describe('LocalStore packs', () => {
  for (const workers of [0, 2]) {
    it(`new objects go into one pack, loose objects of an older store are still read, verify is clean (workers=${workers})`, async () => {
      const t = tmpDir();
      try {
        // a loose store writes as layout 1 did: one file per object, rows without a pack
        const old = await LocalStore.open(t.dir, { workers, loose: true });
        const a = await old.put(prng(1, 30_000));
        await old.close();
        assert.equal(looseFiles(t.dir), 1);
        const store = await LocalStore.open(t.dir, { workers });
        try {
          const data = Array.from({ length: 20 }, (_, i) => prng(10 + i, 20_000 + i));
          const ds = [];
          for (const d of data) ds.push((await store.put(d)).digest);
          assert.equal((await store.put(data[3]!)).added, false, 'not written twice');
          assert.equal(looseFiles(t.dir), 1, 'no file per object');
          assert.equal(packs(t.dir).length, 1);
          assert.ok(Buffer.from(await store.get(a.digest)).equals(prng(1, 30_000)));
          const got = await store.getMany(ds);
          got.forEach((g, i) => assert.ok(Buffer.from(g as Uint8Array).equals(data[i]!), `object ${i}`));
          const v = await verifyStore(store);
          assert.deepEqual(v.problems, []);
          assert.equal(v.objectsChecked, 21);
          assert.equal(v.packGarbageBytes, 0);
          // the entries are self-describing: a scan finds every object in write order
          const scan = scanPack(packPath(store.packsDir, packs(t.dir)[0]!.slice(0, -5)));
          assert.deepEqual(scan.entries.map((e) => e.digest), ds);
          assert.equal(scan.end, scan.size);
        } finally {
          await store.close();
        }
      } finally {
        t.cleanup();
      }
    });
  }

  it('gc --pack-loose moves the live loose objects of an older store into a pack and removes their files', async () => {
    const t = tmpDir();
    try {
      const old = await LocalStore.open(t.dir, { workers: 0, loose: true });
      const data = Array.from({ length: 5 }, (_, i) => prng(130 + i, 20_000));
      const ds: string[] = [];
      for (const d of data) ds.push((await old.put(d)).digest);
      old.index.putImage(image(ds[0]!), ds.slice(0, 4));
      await old.close();
      const store = await LocalStore.open(t.dir, { workers: 0 });
      try {
        const r = await collectGarbage(store, { packLoose: true });
        assert.equal(r.removedObjects, 1);
        assert.equal(r.packedLoose, 4);
        assert.equal(looseFiles(t.dir), 0);
        assert.equal(packs(t.dir).length, 1);
        for (let i = 0; i < 4; i++) {
          assert.ok(store.index.getObject(ds[i]!)?.pack, `object ${i} is packed`);
          assert.ok(Buffer.from(await store.get(ds[i]!)).equals(data[i]!));
        }
        const v = await verifyStore(store);
        assert.deepEqual(v.problems.filter((p) => p.problem !== 'bad-manifest'), []);
        assert.equal(v.objectsChecked, 4);
      } finally {
        await store.close();
      }
    } finally {
      t.cleanup();
    }
  });

  it('object rows are committed only after the pack is synced', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 0 });
    const rowsInDb = () => {
      const db = new Database(path.join(t.dir, 'index.db'), { readonly: true });
      try {
        return (db.prepare('SELECT count(*) AS n FROM objects').get() as { n: number }).n;
      } finally {
        db.close();
      }
    };
    const seen: number[] = [];
    const sync = store.packs.sync.bind(store.packs);
    store.packs.sync = () => {
      seen.push(rowsInDb());
      sync();
    };
    try {
      for (let i = 0; i < 5; i++) await store.put(prng(30 + i, 10_000));
      assert.equal(rowsInDb(), 0, 'queued, not committed');
      store.index.flush();
      assert.deepEqual(seen, [0], 'synced once, before any row was in');
      assert.equal(rowsInDb(), 5);
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('deleted objects are pack garbage: verify reports it, gc rewrites the pack and every live object still reads', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 2 });
    try {
      const data = Array.from({ length: 12 }, (_, i) => prng(50 + i, 40_000));
      const ds = [];
      for (const d of data) ds.push((await store.put(d)).digest);
      // an image needs objects 0..2 (0 is its "manifest"); the rest are garbage
      store.index.putImage(image(ds[0]!), ds.slice(0, 3));
      await store.packs.close(); // this writer is done with its pack: gc may rewrite it
      const before = fs.statSync(path.join(t.dir, 'packs', packs(t.dir)[0]!)).size;
      await store.delete(ds[11]!);
      // the "manifest" is random bytes: verify says so, and nothing else
      const real = (v: { problems: Array<{ problem: string }> }) => v.problems.filter((p) => p.problem !== 'bad-manifest');
      const v = await verifyStore(store);
      assert.deepEqual(real(v), []);
      assert.equal(v.packGarbageBytes, ENTRY_HEADER + (await sizeOfFrame(data[11]!)));
      const r = await collectGarbage(store);
      assert.equal(r.removedObjects, 8);
      assert.equal(r.repackedPacks, 1);
      assert.equal(packs(t.dir).length, 1);
      const after = fs.statSync(path.join(t.dir, 'packs', packs(t.dir)[0]!)).size;
      assert.ok(after < before / 3, `${after} of ${before} bytes`);
      for (let i = 0; i < 3; i++) assert.ok(Buffer.from(await store.get(ds[i]!)).equals(data[i]!));
      const v2 = await verifyStore(store);
      assert.deepEqual(real(v2), []);
      assert.equal(v2.packGarbageBytes, 0);
      assert.equal(v2.objectsChecked, 3);
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  for (const workers of [0, 1]) {
    it(`a reader whose object was repacked away by another store instance (gc) looks it up again and reads it (workers=${workers})`, async () => {
      const t = tmpDir();
      try {
        const w = await LocalStore.open(t.dir, { workers: 0 });
        const data = Array.from({ length: 6 }, (_, i) => prng(110 + i, 30_000));
        const ds: string[] = [];
        for (const d of data) ds.push((await w.put(d)).digest);
        w.index.putImage(image(ds[0]!), ds.slice(0, 2));
        await w.close();
        const reader = await LocalStore.open(t.dir, { workers });
        const gc = await LocalStore.open(t.dir, { workers: 0 });
        try {
          // the reader looks the object up; before it reads, gc rewrites the pack and unlinks it
          const look = reader.index.getObject.bind(reader.index);
          let lookups = 0;
          reader.index.getObject = (d) => {
            const row = look(d);
            if (lookups++ === 0) {
              gc.index.deleteUnreferenced(ds.slice(2));
              assert.equal(repack(gc, false).repackedPacks, 1);
              closePacks(); // no descriptor of the old pack left open in this thread
            }
            return row;
          };
          assert.ok(Buffer.from(await reader.get(ds[1]!)).equals(data[1]!));
          assert.equal(lookups, 2, 'looked up once more');
        } finally {
          await gc.close();
          await reader.close();
        }
      } finally {
        t.cleanup();
      }
    });
  }

  it('a writer rotates to a new pack at its size bound; every entry is found where it was put', () => {
    const t = tmpDir();
    try {
      const w = new PackWriter(t.dir, 100_000);
      const put = Array.from({ length: 10 }, (_, i) => {
        const frame = encodeObject(prng(70 + i, 30_000));
        return { digest: sha256(Buffer.from([i])), frame, at: w.append(sha256(Buffer.from([i])), frame) };
      });
      w.close();
      const ids = [...new Set(put.map((p) => p.at.pack))];
      assert.ok(ids.length >= 3, `${ids.length} packs`);
      assert.deepEqual(fs.readdirSync(t.dir).filter((n) => n.endsWith('.writing')), [], 'markers gone once closed');
      for (const id of ids) {
        const scan = scanPack(packPath(t.dir, id));
        assert.ok(scan.size <= 100_000 + 40_000);
        const mine = put.filter((p) => p.at.pack === id);
        assert.deepEqual(scan.entries, mine.map((p) => ({ digest: p.digest, offset: p.at.offset, length: p.frame.length })));
      }
    } finally {
      t.cleanup();
    }
  });

  it('scanPack stops at the first damaged or torn entry and never reads past the file (seeded fuzz)', () => {
    const seed = seedFrom('VMDN_FUZZ_SEED');
    const rand = mulberry32(seed);
    const t = tmpDir();
    try {
      const w = new PackWriter(t.dir);
      let id = '';
      for (let i = 0; i < 6; i++) id = w.append(sha256(Buffer.from([i])), encodeObject(prng(90 + i, 5_000))).pack;
      w.close();
      const good = fs.readFileSync(packPath(t.dir, id));
      const file = path.join(t.dir, 'fuzz.pack');
      for (let round = 0; round < 300; round++) {
        const b = Buffer.from(good.subarray(0, Math.floor(rand() * (good.length + 1))));
        for (let k = Math.floor(rand() * 4); k > 0 && b.length; k--) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
        fs.writeFileSync(file, b);
        const scan = scanPack(file);
        let at = 0;
        for (const e of scan.entries) {
          assert.equal(e.offset, at + ENTRY_HEADER, `seed ${seed} round ${round}`);
          at = e.offset + e.length;
        }
        assert.equal(scan.end, at);
        assert.ok(scan.end <= b.length, `seed ${seed} round ${round}`);
      }
    } finally {
      t.cleanup();
    }
  });
});

async function sizeOfFrame(data: Uint8Array): Promise<number> {
  return encodeObject(data).length;
}
