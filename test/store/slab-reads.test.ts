/**
 * SlabReads against a real local store and its codec workers: objects come
 * back decoded into their slots, byte for byte; a damaged object is refused
 * (its hash checked in the worker) and only it; an object of another size
 * than asked is refused before it is decoded; with the slab full, reads fall
 * back to the store's own buffers, verified the same way; places looked up
 * ahead, and the store's workers shared.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { LocalStore } from '../../src/store/local/local-store.js';
import { Slab } from '../../src/store/local/slab.js';
import { SlabReads } from '../../src/store/local/slab-reads.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';

const settle = (p: Promise<Uint8Array>) => p.then((b) => Buffer.from(b), (e: Error) => e);

describe('SlabReads', () => {
  it('decodes into slots, refuses a damaged or mis-sized object alone, falls back when the slab is full', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 1 });
    try {
      const data = Array.from({ length: 4 }, (_, i) => prng(100 + i, 30_000 + i));
      const digests: string[] = [];
      for (const d of data) digests.push((await store.put(d)).digest);
      await store.close(); // rows committed, packs synced
      const again = await LocalStore.open(t.dir, { workers: 1 });
      const r = new SlabReads(again, new Slab(3 * 40_000), 2);
      try {
        const got = r.read(digests.map((digest, i) => ({ digest, size: data[i]!.length })));
        assert.deepEqual(got.map((g) => g.slot !== null), [true, true, true, false], 'the fourth does not fit');
        const bytes = await Promise.all(got.map((g) => settle(g.ready)));
        bytes.forEach((b, i) => assert.ok(Buffer.isBuffer(b) && b.equals(data[i]!), `object ${i}`));
        assert.equal(got[0]!.slot!.view.buffer, r.slab.buffer, 'decoded into the shared slab');
        for (const g of got) g.slot?.unref();
        assert.equal(r.slab.used, 0);

        const wrongSize = r.read([{ digest: digests[0]!, size: data[0]!.length - 1 }]);
        assert.match(String(await settle(wrongSize[0]!.ready)), /expected|bytes/);
        wrongSize[0]!.slot?.unref();

        // damage object 1 in its pack: it alone is refused
        const row = again.index.getObject(digests[1]!)!;
        const pack = again.place(digests[1]!).objPath;
        const fd = fs.openSync(pack, 'r+');
        const b = Buffer.alloc(1);
        fs.readSync(fd, b, 0, 1, row.offset! + row.storedSize! - 5);
        b[0] ^= 0xff;
        fs.writeSync(fd, b, 0, 1, row.offset! + row.storedSize! - 5);
        fs.closeSync(fd);
        const after = r.read(digests.slice(0, 3).map((digest, i) => ({ digest, size: data[i]!.length })));
        const out = await Promise.all(after.map((g) => settle(g.ready)));
        assert.ok(Buffer.isBuffer(out[0]) && out[0].equals(data[0]!));
        assert.ok(out[1] instanceof Error && /E_CORRUPT_OBJECT|hash|undecodable/.test(`${(out[1] as { code?: string }).code} ${out[1].message}`), String(out[1]));
        assert.ok(Buffer.isBuffer(out[2]) && out[2].equals(data[2]!));
        for (const g of after) g.slot?.unref();
        assert.equal(r.slab.used, 0, 'a failed read gives its slot back too');
      } finally {
        await r.close();
        await again.close();
      }
    } finally {
      t.cleanup();
    }
  });

  it('reads at places looked up ahead, and a place gone stale falls back to the store and is forgotten', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 1 });
    try {
      const data = Array.from({ length: 3 }, (_, i) => prng(200 + i, 20_000 + i));
      const digests: string[] = [];
      for (const d of data) digests.push((await store.put(d)).digest);
      await store.close();
      const again = await LocalStore.open(t.dir, { workers: 1 });
      // no pool of its own: the store's workers decode
      const r = new SlabReads(again, new Slab(4 * 40_000));
      try {
        r.knowPlaces([...digests, digests[0]!]);
        const places = (r as unknown as { places: Map<string, { objPath: string }> }).places;
        assert.equal(places.size, 3, 'one place per object, repeats and all');
        // as if a gc had moved object 1 since: its remembered pack is gone
        places.set(digests[1]!, { ...places.get(digests[1]!)!, objPath: `${t.dir}/packs/gone.pack` });
        const got = r.read(digests.map((digest, i) => ({ digest, size: data[i]!.length })));
        const out = await Promise.all(got.map((g) => settle(g.ready)));
        out.forEach((b, i) => assert.ok(Buffer.isBuffer(b) && b.equals(data[i]!), `object ${i}: ${String(b)}`));
        assert.equal(places.has(digests[1]!), false, 'the stale place is forgotten');
        assert.equal(places.has(digests[0]!), true);
        for (const g of got) g.slot?.unref();
        assert.equal(r.slab.used, 0);
        await r.close();
        assert.ok(Buffer.from(await again.get(digests[2]!)).equals(data[2]!), 'the store and its workers live on');
      } finally {
        await r.close();
        await again.close();
      }
    } finally {
      t.cleanup();
    }
  });
});
