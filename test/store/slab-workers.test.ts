/**
 * SlabReads and its workers' holds: a slot whose reader let go while a
 * worker still decodes into it is not reused until the worker answered
 * (else another object's bytes, already verified, would be overwritten);
 * a worker that dies fails its reads, gives their slots back, and is
 * replaced (reads sent to a dead worker used to wait forever); closing fails
 * what is pending instead of leaving it unsettled with its slots held.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Worker } from 'node:worker_threads';
import { LocalStore } from '../../src/store/local/local-store.js';
import { Slab } from '../../src/store/local/slab.js';
import { SlabReads } from '../../src/store/local/slab-reads.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';

const settle = (p: Promise<Uint8Array>) => p.then((b) => Buffer.from(b), (e: Error) => e);
const SIZE = 200_000;

let t: ReturnType<typeof tmpDir>;
let store: LocalStore;
const data = Array.from({ length: 24 }, (_, i) => prng(300 + i, SIZE));
const items: Array<{ digest: string; size: number }> = [];

before(async () => {
  t = tmpDir();
  const first = await LocalStore.open(t.dir, { workers: 1 });
  for (const d of data) items.push({ digest: (await first.put(d)).digest, size: d.length });
  await first.close();
  store = await LocalStore.open(t.dir, { workers: 1 });
});

after(async () => {
  await store?.close();
  t?.cleanup();
});

describe('SlabReads workers', () => {
  it('a slot let go by its reader stays taken until the worker decoding into it answered', async () => {
    const r = new SlabReads(store, new Slab(items.length * SIZE * 2), 2);
    try {
      const got = r.read(items);
      for (const g of got) g.slot!.unref(); // a read-ahead dropped at once
      assert.equal(r.slab.holds, items.length, 'the workers still hold every slot');
      assert.ok(r.slab.used >= items.length * SIZE);
      const bytes = await Promise.all(got.map((g) => settle(g.ready)));
      bytes.forEach((b, i) => assert.ok(Buffer.isBuffer(b) && b.equals(data[i]!), `object ${i}`));
      assert.deepEqual({ holds: r.slab.holds, used: r.slab.used, slots: r.slab.slots }, { holds: 0, used: 0, slots: 0 });
    } finally {
      await r.close();
    }
  });

  it('a worker that dies fails its reads, gives their slots back, and is replaced', { timeout: 20_000 }, async () => {
    const r = new SlabReads(store, new Slab(items.length * SIZE * 2), 2);
    try {
      // both workers up and running first (one that dies before it started is not respawned: the pool is broken)
      for (const g of r.read(items)) {
        await g.ready;
        g.slot!.unref();
      }
      const workers = (r as unknown as { pool: { workers: Worker[] } }).pool.workers;
      const dead = workers[0]!;
      const got = r.read(items);
      await dead.terminate();
      const out = await Promise.all(got.map((g) => settle(g.ready)));
      out.forEach((b, i) => assert.ok(b instanceof Error || b.equals(data[i]!), `object ${i}`));
      for (const g of got) g.slot?.unref();
      assert.deepEqual({ holds: r.slab.holds, used: r.slab.used }, { holds: 0, used: 0 });
      assert.notEqual(workers[0], dead, 'replaced');
      const again = r.read(items);
      const bytes = await Promise.all(again.map((g) => settle(g.ready)));
      bytes.forEach((b, i) => assert.ok(Buffer.isBuffer(b) && b.equals(data[i]!), `object ${i} after the worker was replaced`));
      for (const g of again) g.slot?.unref();
      assert.equal(r.slab.holds, 0);
    } finally {
      await r.close();
    }
  });

  it('closing fails the reads still pending and lets go of the workers\' holds', { timeout: 20_000 }, async () => {
    const r = new SlabReads(store, new Slab(items.length * SIZE * 2), 2);
    const got = r.read(items);
    await r.close();
    const out = await Promise.all(got.map((g) => settle(g.ready)));
    out.forEach((b, i) => assert.ok(b instanceof Error || b.equals(data[i]!), `object ${i}`));
    for (const g of got) g.slot?.unref();
    assert.deepEqual({ holds: r.slab.holds, used: r.slab.used }, { holds: 0, used: 0 });
    assert.ok(await r.read(items.slice(0, 1))[0]!.ready.then(() => false, () => true), 'a read after close fails');
  });
});
