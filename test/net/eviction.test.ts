/** Eviction policies over a byte budget, checked on synthetic access traces. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPolicy, FrequencySketch, LruPolicy, POLICIES, type EvictionPolicy } from '../../src/store/cache/eviction.js';

/** Replay a trace the way the edge does: hit -> touch, miss -> insert and drop the victims. */
function replay(p: EvictionPolicy, trace: Array<[string, number]>): { hits: number; misses: number; maxBytes: number } {
  let hits = 0;
  let misses = 0;
  let maxBytes = 0;
  for (const [k, size] of trace) {
    if (p.has(k)) {
      hits++;
      p.touch(k);
    } else {
      misses++;
      for (const v of p.insert(k, size)) assert.ok(!p.has(v), `victim ${v} still resident`);
    }
    maxBytes = Math.max(maxBytes, p.bytes);
  }
  return { hits, misses, maxBytes };
}

/** Seeded xorshift so traces are reproducible. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

const sizeOf = (k: string) => 4096 + (Number.parseInt(k.slice(1), 10) % 16) * 4096;

describe('eviction policies', () => {
  it('LRU evicts the least recently used first, by bytes', () => {
    const p = new LruPolicy(300);
    assert.deepEqual(p.insert('a', 100), []);
    assert.deepEqual(p.insert('b', 100), []);
    assert.deepEqual(p.insert('c', 100), []);
    p.touch('a');
    assert.deepEqual(p.insert('d', 150), ['b', 'c']);
    assert.ok(p.has('a') && p.has('d'));
    assert.equal(p.bytes, 250);
    assert.deepEqual(p.insert('huge', 1000), ['a', 'd', 'huge'], 'an object over the whole budget is not kept');
    assert.equal(p.bytes, 0);
  });

  for (const name of POLICIES) {
    it(`${name}: never exceeds its budget, removal keeps the books straight`, () => {
      const r = rng(7);
      const p = createPolicy(name, 1 << 20);
      const trace: Array<[string, number]> = [];
      for (let i = 0; i < 20_000; i++) {
        const k = `k${Math.floor(r() ** 3 * 2000)}`;
        trace.push([k, sizeOf(k)]);
      }
      const res = replay(p, trace);
      assert.ok(res.maxBytes <= 1 << 20, `${res.maxBytes} bytes over budget`);
      const before = p.size;
      const some = trace.map(([k]) => k).find((k) => p.has(k))!;
      p.remove(some);
      assert.equal(p.size, before - 1);
      assert.ok(!p.has(some));
    });
  }

  it('W-TinyLFU keeps a popular set through one-off scans where LRU loses it', () => {
    // a hot set of 150 objects (~6 MiB) asked for all the time, interleaved with
    // long scans of objects asked for once (a client pulling a rare image)
    const r = rng(42);
    const trace: Array<[string, number]> = [];
    let scan = 100_000;
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 600; i++) {
        const k = `h${Math.floor(r() * 150)}`;
        trace.push([k, sizeOf(k)]);
      }
      for (let i = 0; i < 400; i++) {
        const k = `s${scan++}`;
        trace.push([k, sizeOf(k)]);
      }
    }
    const budget = 8 << 20;
    const lru = replay(createPolicy('lru', budget), trace);
    const tiny = replay(createPolicy('wtinylfu', budget), trace);
    const ratio = (x: { hits: number; misses: number }) => x.hits / (x.hits + x.misses);
    assert.ok(ratio(tiny) > ratio(lru) + 0.1, `W-TinyLFU ${ratio(tiny).toFixed(3)} vs LRU ${ratio(lru).toFixed(3)}`);
  });

  it('frequency sketch counts, saturates and ages', () => {
    const s = new FrequencySketch(64);
    for (let i = 0; i < 5; i++) s.increment('abc');
    assert.equal(s.frequency('abc'), 5);
    assert.equal(s.frequency('never'), 0);
    for (let i = 0; i < 40; i++) s.increment('abc');
    assert.equal(s.frequency('abc'), 15);
    // 10 x width increments of other keys halve every counter
    for (let i = 0; i < 64 * 10; i++) s.increment(`x${i}`);
    assert.ok(s.frequency('abc') <= 7, `aged to ${s.frequency('abc')}`);
  });
});
