/**
 * The slab's slots: a slot goes back only when its last holder lets go, is
 * never handed out twice at once, and freed neighbours merge so large slots
 * fit again. A reuse while held would let a worker overwrite bytes a reply
 * has not sent yet.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Slab } from '../../src/store/local/slab.js';

describe('Slab', () => {
  it('keeps a slot while any holder has it, and reuses it after the last lets go', () => {
    const slab = new Slab(4096);
    const a = slab.alloc(4096)!;
    a.ref(); // a reply holds it besides the cache
    a.unref(); // the cache drops it
    assert.equal(slab.alloc(1024), null, 'full while the reply still holds the slot');
    a.view.fill(7);
    a.unref(); // the reply was written
    const b = slab.alloc(4096)!;
    assert.ok(b, 'free again');
    assert.equal(b.at, a.at);
  });

  it('never hands out overlapping slots, and merges freed neighbours', () => {
    const slab = new Slab(16 * 1024);
    const slots = [slab.alloc(3000)!, slab.alloc(5000)!, slab.alloc(2000)!, slab.alloc(6000)!];
    assert.ok(slots.every(Boolean));
    const ranges = slots.map((s) => [s.at, s.at + s.size]).sort((x, y) => x[0]! - y[0]!);
    for (let i = 1; i < ranges.length; i++) assert.ok(ranges[i]![0]! >= ranges[i - 1]![1]!, 'slots overlap');
    assert.equal(slab.alloc(1024), null);
    slots[1]!.unref();
    slots[2]!.unref();
    const merged = slab.alloc(7000); // fits only in slots 1 and 2 together
    assert.ok(merged);
    assert.equal(merged.at, slots[1]!.at);
    merged.unref();
    slots[0]!.unref();
    slots[3]!.unref();
    assert.equal(slab.used, 0);
    assert.ok(slab.alloc(16 * 1024), 'all of it free in one extent');
  });

  it('refuses a second release and a use after free', () => {
    const slab = new Slab(8192);
    const a = slab.alloc(100)!;
    a.unref();
    assert.throws(() => a.unref(), /released twice/);
    assert.throws(() => a.ref(), /after it was freed/);
  });
});
