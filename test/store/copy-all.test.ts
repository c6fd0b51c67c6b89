import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { LocalStore } from '../../src/store/local/local-store.js';
import { planBatches, planCopies, COPY_BATCH_ITEMS } from '../../src/store/local/copy-all.js';
import { packRunTable, unpackRunTable } from '../../src/store/local/run-table.js';
import { VmdnError } from '../../src/errors.js';
import { flipObjectByte } from '../helpers/object-bytes.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';

type Item = { digest: string; offset: number; length: number };

/** A layout of `data`'s objects in a file: back to back, a gap now and then, one object twice. */
function layout(digests: string[], data: Buffer[]): { items: Item[]; size: number } {
  const items: Item[] = [];
  let at = 0;
  const place = (i: number) => {
    items.push({ digest: digests[i]!, offset: at, length: data[i]!.length });
    at += data[i]!.length + (i % 5 === 4 ? 8192 : 0);
  };
  for (let i = 0; i < digests.length; i++) place(i);
  place(3); // a repeated chunk
  return { items, size: at + 4096 };
}

function emptyFile(path: string, size: number): void {
  fs.writeFileSync(path, '');
  fs.truncateSync(path, size);
}

describe('LocalStore.copyAll', () => {
  it('packs and unpacks a run table: paths shared, loose objects without a pack offset', () => {
    const rows = [
      { digest: 'a'.repeat(64), objPath: '/s/packs/1.pack', packOffset: 48, storedSize: 100, offset: 0, length: 300 },
      { digest: 'b'.repeat(64), objPath: '/s/objects/bb/bbb', offset: 300, length: 20 },
      { digest: 'c'.repeat(64), objPath: '/s/packs/1.pack', packOffset: 196, storedSize: 7, offset: 4096, length: 5000 },
    ];
    const t = packRunTable(rows);
    assert.deepEqual(t.paths, ['/s/packs/1.pack', '/s/objects/bb/bbb']);
    assert.deepEqual(unpackRunTable(t), rows);
    assert.throws(() => unpackRunTable({ ...t, digests: t.digests.slice(1) }), (e: VmdnError) => e.code === 'E_INTERNAL');
  });

  it('carries a repeated object\'s other places in the table (decoded once)', () => {
    const rows = [
      { digest: 'a'.repeat(64), objPath: '/s/packs/1.pack', packOffset: 48, storedSize: 100, offset: 0, length: 300, copies: [9000, 20000] },
      { digest: 'b'.repeat(64), objPath: '/s/objects/bb/bbb', offset: 300, length: 20 },
      { digest: 'c'.repeat(64), objPath: '/s/packs/1.pack', packOffset: 196, storedSize: 7, offset: 4096, length: 5000, copies: [30000] },
    ];
    const t = packRunTable(rows);
    assert.deepEqual(Array.from(t.copies!), [0, 9000, 0, 20000, 2, 30000]);
    assert.deepEqual(unpackRunTable(t), rows);
    assert.equal(packRunTable(rows.map(({ copies, ...r }) => r)).copies, undefined);
    assert.throws(() => unpackRunTable({ ...t, copies: Float64Array.from([3, 0]) }), (e: VmdnError) => e.code === 'E_INTERNAL');
    assert.throws(() => unpackRunTable({ ...t, copies: Float64Array.from([0]) }), (e: VmdnError) => e.code === 'E_INTERNAL');
  });

  it('takes each object once, later places as copies; a repeat of another length stays an item; refuses a bad place', () => {
    const a = 'a'.repeat(64);
    const b = 'b'.repeat(64);
    const { firstOf, copies } = planCopies([
      { digest: a, offset: 0, length: 10 },
      { digest: b, offset: 10, length: 5 },
      { digest: a, offset: 100, length: 10 },
      { digest: a, offset: 200, length: 11 },
      { digest: a, offset: 300, length: 10 },
    ]);
    assert.deepEqual(Array.from(firstOf), [0, 1, 0, 3, 0]);
    assert.deepEqual([...copies], [[0, [100, 300]]]);
    assert.throws(() => planCopies([{ digest: a, offset: -1, length: 10 }]), (e: VmdnError) => e.code === 'E_INTERNAL');
    assert.throws(() => planCopies([{ digest: a, offset: 0, length: 1.5 }]), (e: VmdnError) => e.code === 'E_INTERNAL');
  });

  it('cuts batches by decoded bytes and by count, in order, never an empty one', () => {
    const items = Array.from({ length: 10 }, (_, i) => ({ length: i === 4 ? 5000 : 1000, i }));
    const b = planBatches(items, 3000);
    assert.deepEqual(b.map((x) => x.map((y) => y.i)), [[0, 1, 2], [3], [4], [5, 6, 7], [8, 9]]);
    const many = planBatches(Array.from({ length: COPY_BATCH_ITEMS * 2 + 1 }, () => ({ length: 1 })));
    assert.deepEqual(many.map((x) => x.length), [COPY_BATCH_ITEMS, COPY_BATCH_ITEMS, 1]);
    assert.deepEqual(planBatches([]), []);
  });

  it('writes the same file as copyRuns, packed and loose objects, in many batches; reports each batch', async () => {
    const t = tmpDir();
    try {
      const data = Array.from({ length: 24 }, (_, i) => (i % 7 === 6 ? Buffer.concat([Buffer.alloc(9000), prng(100 + i, 3000)]) : prng(100 + i, 2000 + 997 * i)));
      // the first objects loose (an older store's), the rest in a pack
      const old = await LocalStore.open(t.dir, { workers: 0, loose: true });
      const digests = [];
      for (const d of data.slice(0, 5)) digests.push((await old.put(d)).digest);
      await old.close();
      const store = await LocalStore.open(t.dir, { workers: 2 });
      try {
        for (const d of data.slice(5)) digests.push((await store.put(d)).digest);
        const { items, size } = layout(digests, data);
        const viaRuns = `${t.dir}/runs.raw`;
        const viaAll = `${t.dir}/all.raw`;
        emptyFile(viaRuns, size);
        emptyFile(viaAll, size);
        const n1 = await store.copyRuns(items, { outPath: viaRuns });
        const batches: number[] = [];
        const n2 = await store.copyAll(items, { outPath: viaAll }, { batchBytes: 16_000, onBatch: (n) => batches.push(n) });
        await store.releaseTarget(viaRuns);
        await store.releaseTarget(viaAll);
        const total = items.reduce((n, it) => n + it.length, 0);
        assert.equal(n1, total);
        assert.equal(n2, total);
        assert.ok(batches.length > 5, `${batches.length} batches`);
        assert.equal(batches.reduce((a, b) => a + b, 0), total);
        const img = fs.readFileSync(viaAll);
        assert.ok(img.equals(fs.readFileSync(viaRuns)));
        for (const it of items) assert.ok(img.subarray(it.offset, it.offset + it.length).equals(data[digests.indexOf(it.digest)]!));
      } finally {
        await store.close();
      }
    } finally {
      t.cleanup();
    }
  });

  it('fails on a corrupt object in the middle with its digest (E_CORRUPT_OBJECT), a missing one with E_NOT_FOUND, a wrong length before writing it', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(`${t.dir}/s`, { workers: 2 });
    try {
      const data = Array.from({ length: 12 }, (_, i) => prng(200 + i, 5000 + i));
      const digests = [];
      for (const d of data) digests.push((await store.put(d)).digest);
      const { items, size } = layout(digests, data);
      const out = `${t.dir}/out.raw`;
      emptyFile(out, size);
      const bad = digests[6]!;
      flipObjectByte(store, bad);
      await assert.rejects(store.copyAll(items, { outPath: out }, { batchBytes: 12_000 }), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT' && e.data.digest === bad && e.message.includes(bad.slice(0, 12)));
      // nothing of the bad object was written where it belongs
      const at = items.find((it) => it.digest === bad)!;
      assert.ok(fs.readFileSync(out).subarray(at.offset, at.offset + at.length).equals(Buffer.alloc(at.length)));

      // a repeated object that is bad: written at none of its places
      const bad2 = digests[3]!;
      flipObjectByte(store, bad2);
      emptyFile(out, size);
      await assert.rejects(store.copyAll(items.filter((it) => it.digest !== bad), { outPath: out }), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT' && e.data.digest === bad2);
      const places = items.filter((it) => it.digest === bad2);
      assert.equal(places.length, 2);
      for (const p of places) assert.ok(fs.readFileSync(out).subarray(p.offset, p.offset + p.length).equals(Buffer.alloc(p.length)));

      const missing = 'ef'.repeat(32);
      await assert.rejects(store.copyAll([items[0]!, { digest: missing, offset: 0, length: 10 }], { outPath: out }), (e: VmdnError) => e.code === 'E_NOT_FOUND');
      emptyFile(out, size);
      const short = { ...items[1]!, length: items[1]!.length - 1 };
      await assert.rejects(store.copyAll([short], { outPath: out }), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT' && e.data.digest === short.digest);
      assert.ok(fs.readFileSync(out).equals(Buffer.alloc(size)), 'nothing written');
      await assert.rejects(store.copyAll([{ digest: '../x', offset: 0, length: 1 }], { outPath: out }), (e: VmdnError) => e.code === 'E_USAGE');
      await store.releaseTarget(out);
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});
