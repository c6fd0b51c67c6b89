/**
 * SlabDisk's leases: the pieces of a read stay as they were until the lease
 * is released, however many reads, evictions and read-aheads come between
 * (each of which takes slots from the same small slab); once every lease and
 * cache entry let go, the slab is empty. Reads go through a stand-in for the
 * codec workers that fills each slot a tick later, as a worker does.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Slab } from '../../src/store/local/slab.js';
import type { SlabRead, SlabReads } from '../../src/store/local/slab-reads.js';
import { SlabDisk } from '../../src/nbd/slab-disk.js';
import { slabSizes } from '../../src/nbd/open.js';
import type { Manifest } from '../../src/model/manifest.js';

const CHUNK = 8192;
const COUNT = 64;
/** The byte chunk `i` holds everywhere (chunk 0 and 1 distinct, so a reused slot shows). */
const fillOf = (i: number) => (i * 37 + 11) & 255;
const digestOf = (i: number) => i.toString(16).padStart(64, '0');

function fakeReads(slab: Slab, log: { reads: number }): SlabReads {
  return {
    slab,
    read(items: Array<{ digest: string; size: number }>): SlabRead[] {
      return items.map(({ digest, size }) => {
        log.reads++;
        const slot = slab.alloc(size);
        slot?.ref(); // the worker's hold
        const ready = new Promise<Uint8Array>((resolve) =>
          setImmediate(() => {
            const view = slot ? slot.view : Buffer.alloc(size);
            view.fill(fillOf(parseInt(digest, 16)));
            slot?.unref();
            resolve(view);
          }),
        );
        return { slot, ready };
      });
    },
    close: async () => {},
  } as unknown as SlabReads;
}

function manifest(): Manifest {
  // chunk i at i*CHUNK, a hole after chunk 9
  const chunks = Array.from({ length: COUNT }, (_, i) => [i * CHUNK + (i >= 10 ? CHUNK : 0), CHUNK, digestOf(i)]);
  return { virtualSize: (COUNT + 1) * CHUNK, chunks, source: { clusterSize: 65536 } } as unknown as Manifest;
}

describe('SlabDisk', () => {
  it('a leased piece keeps its bytes until released, while other reads reuse the slab', async () => {
    const slab = new Slab(8 * CHUNK);
    const disk = new SlabDisk(manifest(), fakeReads(slab, { reads: 0 }), { cacheBytes: 2 * CHUNK, aheadBytes: 2 * CHUNK });
    const held = await disk.readLeased(0, 2 * CHUNK);
    const before = Buffer.concat(held.pieces);
    assert.equal(before[0], fillOf(0));
    assert.equal(before[CHUNK], fillOf(1));
    // many more reads than the slab holds: their chunks need slots, evicting the cache as they go
    for (let i = 2; i < COUNT - 1; i++) {
      const l = await disk.readLeased(i * CHUNK + (i >= 10 ? CHUNK : 0), CHUNK);
      l.release();
    }
    assert.deepEqual(Buffer.concat(held.pieces), before, 'a held slot was reused');
    held.release();
    held.release(); // a second release is a no-op
    await disk.close();
    await new Promise((r) => setImmediate(r)); // read-ahead still being decoded: the worker's hold
    assert.equal(slab.used, 0, 'every slot back once nothing holds it');
  });

  it('reads holes as zeros and chunks as their bytes, and falls back to buffers when the slab is full', async () => {
    const slab = new Slab(2 * CHUNK);
    const disk = new SlabDisk(manifest(), fakeReads(slab, { reads: 0 }), { cacheBytes: CHUNK, aheadBytes: 0 });
    const leases = [await disk.readLeased(0, CHUNK), await disk.readLeased(CHUNK, CHUNK), await disk.readLeased(2 * CHUNK, CHUNK)];
    assert.equal(slab.used, 2 * CHUNK);
    assert.deepEqual(leases.map((l) => Buffer.concat(l.pieces)[5]), [fillOf(0), fillOf(1), fillOf(2)]);
    const across = await disk.read(9 * CHUNK + 100, 2 * CHUNK); // end of chunk 9, the hole, start of chunk 10
    assert.equal(across[0], fillOf(9));
    assert.ok(across.subarray(CHUNK - 100, 2 * CHUNK - 100).every((b) => b === 0));
    assert.equal(across[2 * CHUNK - 100], fillOf(10));
    for (const l of leases) l.release();
    await disk.close();
    assert.equal(slab.used, 0);
  });

  it('a chunk read twice at once is fetched once, and cached reads fetch nothing', async () => {
    const log = { reads: 0 };
    const disk = new SlabDisk(manifest(), fakeReads(new Slab(16 * CHUNK), log), { cacheBytes: 8 * CHUNK, aheadBytes: 0 });
    const [a, b] = await Promise.all([disk.readLeased(0, 100), disk.readLeased(200, 100)]);
    assert.equal(log.reads, 1);
    (await disk.readLeased(0, CHUNK)).release();
    assert.equal(log.reads, 1);
    a.release();
    b.release();
    await disk.close();
  });
});

describe('SlabDisk places', () => {
  it('looks the places of the chunks a reader in order gets to up a window at a time, before it reads them', async () => {
    const n = 20_000; // more than one window (16,384 chunks)
    const size = 512;
    const chunks = Array.from({ length: n }, (_, i) => [i * size, size, digestOf(i)]);
    const m = { virtualSize: n * size, chunks, source: { clusterSize: 65536 } } as unknown as Manifest;
    const known = new Set<string>();
    const lookups: number[] = [];
    let unknownReads = 0;
    const slab = new Slab(1 << 20);
    const inner = fakeReads(slab, { reads: 0 });
    const reads = Object.assign(Object.create(inner) as SlabReads, {
      knowPlaces(digests: readonly string[]) {
        lookups.push(digests.length);
        for (const d of digests) known.add(d);
      },
      read(items: Array<{ digest: string; size: number }>) {
        for (const it of items) if (!known.has(it.digest)) unknownReads++;
        return inner.read(items);
      },
    });
    const disk = new SlabDisk(m, reads, { cacheBytes: 16 * size, aheadBytes: 64 * size });
    assert.deepEqual(lookups, [16_384], 'the first window at open');
    for (let at = 0; at < m.virtualSize; at += 32 * size) (await disk.readLeased(at, 32 * size)).release();
    assert.equal(lookups.length, 2, `then one more: ${lookups.join(', ')}`);
    // the reads that start a window find it looked up; only requests outside the read-ahead may ask first
    assert.ok(unknownReads <= 64, `${unknownReads} chunks read before their places were looked up`);
    await disk.close();
  });
});

describe('slabSizes', () => {
  it('VMDN_NBD_SLAB_MIB sets the slab, the cache and read-ahead shrink with it; nonsense is ignored', () => {
    const base = slabSizes({});
    assert.deepEqual(base, { bytes: 80 << 20, cacheBytes: 8 << 20, aheadBytes: 16 << 20 });
    assert.deepEqual(slabSizes({ VMDN_NBD_SLAB_MIB: '1' }), { bytes: 1 << 20, cacheBytes: Math.floor((1 << 20) / 10), aheadBytes: Math.floor((1 << 20) / 5) });
    assert.deepEqual(slabSizes({ VMDN_NBD_SLAB_MIB: '800' }), { bytes: 800 << 20, cacheBytes: 8 << 20, aheadBytes: 16 << 20 });
    for (const v of ['0', '-3', 'x', '']) assert.deepEqual(slabSizes({ VMDN_NBD_SLAB_MIB: v }), base, v);
  });
});
