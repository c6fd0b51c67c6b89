import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { LocalStore } from '../../src/store/local/local-store.js';
import { frameContentSize, encodeObject, decodeObject } from '../../src/store/codec.js';
import { sha256 } from '../../src/store/digest.js';
import { VmdnError } from '../../src/errors.js';
import { storeSuite } from './store-suite.js';
import { namesSuite } from './names-suite.js';
import { CachingStore } from '../../src/store/cache/caching-store.js';
import { flipObjectByte, objectBytes, writeObjectBytes } from '../helpers/object-bytes.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';

for (const workers of [0, 2]) {
  storeSuite(`LocalStore (workers=${workers})`, async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers });
    return { store, cleanup: async () => { await store.close(); t.cleanup(); } };
  });
}

namesSuite('LocalStore', async () => {
  const t = tmpDir();
  const store = await LocalStore.open(t.dir, { workers: 0 });
  return { store, cleanup: async () => { await store.close(); t.cleanup(); } };
});

// a read-through cache is a store too: what is put into it is kept in its local store
storeSuite('CachingStore over a LocalStore upstream', async () => {
  const t = tmpDir();
  const upstream = await LocalStore.open(`${t.dir}/upstream`, { workers: 0 });
  const local = await LocalStore.open(`${t.dir}/cache`, { workers: 0 });
  const store = await CachingStore.open(local, upstream);
  return { store, cleanup: async () => { await store.close(); await local.close(); await upstream.close(); t.cleanup(); } };
}, { prunable: false });

describe('LocalStore on disk', () => {
  it('detects a corrupted object file on read and in verifyObject', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 0 });
    try {
      const { digest } = await store.put(prng(21, 40_000));
      flipObjectByte(store, digest);
      await assert.rejects(store.get(digest), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT');
      await assert.rejects(store.verifyObject(digest), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT');
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('storedBytes sums the stored sizes statMany gives, of indexed objects only', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 0 });
    try {
      const a = await store.put(prng(23, 40_000));
      const b = await store.put(Buffer.alloc(70_000, 3));
      const absent = sha256(Buffer.from('not stored'));
      const stats = await store.statMany([a.digest, b.digest, absent]);
      const sum = [...stats.values()].reduce((n, s) => n + s.storedSize, 0);
      assert.ok(a.storedSize !== b.storedSize);
      assert.equal(await store.storedBytes([a.digest, b.digest, absent]), sum);
      assert.equal(await store.storedBytes([b.digest]), b.storedSize);
      assert.equal(await store.storedBytes([]), 0);
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('statMany asked about more digests than the store holds objects gives the same answer whether the store is small or not', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 0 });
    try {
      // many more digests asked for than stored: the small-store path (the whole table read) answers
      const held = [];
      for (let i = 0; i < 3; i++) held.push(await store.put(prng(100 + i, 5_000)));
      const asked = [...held.map((h) => h.digest), ...Array.from({ length: 1500 }, (_, i) => sha256(Buffer.from(`absent ${i}`)))];
      const small = await store.statMany(asked);
      assert.deepEqual([...small.keys()].sort(), held.map((h) => h.digest).sort());
      for (const h of held) assert.deepEqual(small.get(h.digest), { digest: h.digest, size: 5_000, storedSize: h.storedSize });
      assert.equal((await store.statMany(asked.slice(3))).size, 0);
      // past the small-store bound (256 objects) the join answers: the same for what was asked
      const more = [];
      for (let i = 0; i < 300; i++) more.push((await store.put(Buffer.from(`object ${i}`))).digest);
      const big = await store.statMany(asked);
      assert.deepEqual(big, small);
      assert.equal((await store.statMany([...asked, ...more])).size, 303);
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('copyToFd with a length refuses an object of another size before writing', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 1 });
    const out = `${t.dir}/out`;
    fs.writeFileSync(out, Buffer.alloc(100_000, 0x11));
    const fd = fs.openSync(out, 'r+');
    try {
      const data = prng(22, 50_000);
      const { digest } = await store.put(data);
      await assert.rejects(store.copyToFd(digest, fd, 10, 49_999), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT');
      assert.ok(fs.readFileSync(out).equals(Buffer.alloc(100_000, 0x11)), 'nothing written');
      assert.equal(await store.copyToFd(digest, fd, 10, 50_000), 50_000);
      assert.ok(fs.readFileSync(out).subarray(10, 50_010).equals(data));
    } finally {
      fs.closeSync(fd);
      await store.close();
      t.cleanup();
    }
  });

  it('copyRuns places runs of objects in one message, verifies each, refuses a bad, short or missing one', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(`${t.dir}/s`, { workers: 1 });
    const out = `${t.dir}/out`;
    try {
      const zeros = Buffer.concat([prng(41, 3000), Buffer.alloc(20_000), prng(42, 1000)]);
      const data = [prng(40, 10_000), zeros, prng(43, 7_000)];
      const d = await Promise.all(data.map(async (b) => (await store.put(b)).digest));
      fs.writeFileSync(out, '');
      fs.truncateSync(out, 100_000);
      // two objects back to back (one run), then one after a gap
      const n = await store.copyRuns(
        [{ digest: d[0]!, offset: 0, length: 10_000 }, { digest: d[1]!, offset: 10_000, length: 24_000 }, { digest: d[2]!, offset: 60_000, length: 7_000 }],
        { outPath: out },
      );
      await store.releaseTarget(out);
      assert.equal(n, 41_000);
      const img = fs.readFileSync(out);
      assert.ok(img.subarray(0, 10_000).equals(data[0]!) && img.subarray(10_000, 34_000).equals(data[1]!) && img.subarray(60_000, 67_000).equals(data[2]!));
      assert.ok(img.subarray(34_000, 60_000).equals(Buffer.alloc(26_000)) && img.subarray(67_000).equals(Buffer.alloc(33_000)));

      const fill = Buffer.alloc(100_000, 0x11);
      fs.writeFileSync(out, fill);
      const fd = fs.openSync(out, 'r+');
      try {
        await assert.rejects(store.copyRuns([{ digest: d[0]!, offset: 0, length: 9_999 }], { fd }), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT');
        await assert.rejects(store.copyRuns([{ digest: 'ab'.repeat(32), offset: 0, length: 10 }], { fd }), (e: VmdnError) => e.code === 'E_NOT_FOUND');
        flipObjectByte(store, d[2]!);
        await assert.rejects(store.copyRuns([{ digest: d[2]!, offset: 0, length: 7_000 }], { fd }), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT');
        assert.ok(fs.readFileSync(out).equals(fill), 'nothing written');
      } finally {
        fs.closeSync(fd);
      }
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('getMany decodes a batch in one trip: each object intact in order, a corrupt, unframed or missing one refused alone', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(`${t.dir}/s`, { workers: 1 });
    try {
      // incompressible and large enough that the worker's encoded scratch grows mid-batch
      const data = [prng(50, 700_000), prng(51, 5_000), prng(52, 900_000), prng(53, 3_000), prng(54, 40_000), prng(55, 600_000)];
      const d = await Promise.all(data.map(async (b) => (await store.put(b)).digest));
      // one object file bigger than the worker's first scratch buffer, alone
      assert.ok(Buffer.from(await store.get(d[2]!)).equals(data[2]!));
      flipObjectByte(store, d[1]!);
      writeObjectBytes(objectBytes(store, d[3]!), Buffer.from('not a zstd frame'));
      const missing = 'cd'.repeat(32);
      const got = await store.getMany([d[0]!, d[1]!, d[2]!, missing, d[3]!, d[4]!, d[5]!, d[0]!]);
      assert.equal(got.length, 8);
      const bytes = (i: number) => {
        const g = got[i]!;
        assert.ok(!(g instanceof Error), `entry ${i}: ${(g as Error).message}`);
        return Buffer.from(g.buffer, g.byteOffset, g.byteLength);
      };
      assert.ok(bytes(0).equals(data[0]!) && bytes(2).equals(data[2]!) && bytes(5).equals(data[4]!) && bytes(6).equals(data[5]!) && bytes(7).equals(data[0]!));
      assert.equal((got[1] as VmdnError).code, 'E_CORRUPT_OBJECT');
      assert.equal((got[3] as VmdnError).code, 'E_NOT_FOUND');
      assert.equal((got[4] as VmdnError).code, 'E_CORRUPT_OBJECT');
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('prefetch reads objects without failing on missing ones', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 0 });
    try {
      const { digest } = await store.put(prng(23, 3 << 20));
      await store.prefetch([digest, '0'.repeat(64) as typeof digest, digest]);
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  for (const workers of [0, 2]) {
    it(`acceptEncodedMany keeps and places each verified object, refuses a bad one alone (workers=${workers})`, async () => {
      const t = tmpDir();
      const store = await LocalStore.open(`${t.dir}/s`, { workers });
      const out = `${t.dir}/out`;
      fs.writeFileSync(out, Buffer.alloc(60_000));
      try {
        const data = [prng(31, 10_000), prng(32, 20_000), prng(33, 5_000)];
        const items = data.map((d) => ({ digest: sha256(d), encoded: encodeObject(d), offsets: [] as number[] }));
        items[0]!.offsets = [0, 40_000];
        items[2]!.offsets = [20_000];
        // the middle one arrives damaged: a frame of other bytes under its name
        items[1]!.encoded = encodeObject(prng(34, 20_000));
        const r = await store.acceptEncodedMany(items, { source: 'test', outPath: workers ? out : undefined });
        assert.equal(r.length, 3);
        assert.ok(!(r[0] instanceof Error) && r[0].size === 10_000 && r[0].added);
        assert.ok(r[1] instanceof VmdnError && r[1].code === 'E_CORRUPT_OBJECT', String(r[1]));
        assert.ok(!(r[2] instanceof Error) && r[2].size === 5_000);
        // kept, indexed and readable (verified on read); the bad one left nothing
        assert.ok(Buffer.from(await store.get(items[0]!.digest)).equals(data[0]!));
        assert.ok(Buffer.from(await store.get(items[2]!.digest)).equals(data[2]!));
        assert.equal(await store.has(items[1]!.digest), false);
        assert.equal(fs.existsSync(store.objectPath(items[1]!.digest)), false);
        assert.deepEqual(fs.readdirSync(store.tmpDir), []);
        if (workers) {
          const img = fs.readFileSync(out);
          assert.ok(img.subarray(0, 10_000).equals(data[0]!) && img.subarray(40_000, 50_000).equals(data[0]!));
          assert.ok(img.subarray(20_000, 25_000).equals(data[2]!));
          assert.ok(img.subarray(10_000, 20_000).equals(Buffer.alloc(10_000)), 'the bad object placed nothing');
        }
      } finally {
        await store.close();
        t.cleanup();
      }
    });
  }

  it('leaves no temp files after writes', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 2 });
    try {
      await Promise.all(Array.from({ length: 20 }, (_, i) => store.put(prng(100 + i, 10_000))));
      assert.deepEqual(fs.readdirSync(store.tmpDir), []);
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});

describe('codec', () => {
  it('reads the declared content size from the zstd frame header', () => {
    for (const n of [0, 1, 255, 256, 65_791, 65_792, 1 << 20]) {
      assert.equal(frameContentSize(encodeObject(Buffer.alloc(n, 1))), n);
    }
  });
  it('refuses frames that claim more than the object size limit', () => {
    const enc = Buffer.from(encodeObject(Buffer.alloc(1 << 20, 1)));
    // rewrite the 4-byte frame content size to 1 GiB (header: magic, FHD=0x80|..., FCS at byte 5 or 6)
    const fhd = enc[4]!;
    const at = 5 + (((fhd >> 5) & 1) ? 0 : 1);
    assert.equal(fhd >> 6, 2);
    enc.writeUInt32LE(1 << 30, at);
    assert.throws(() => decodeObject(sha256(Buffer.alloc(1 << 20, 1)), enc), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT');
  });
});
