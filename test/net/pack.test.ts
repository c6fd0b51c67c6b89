/** Packs: the frame codec against references, its refusals (seeded mutations), and where references come from. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodePack, encodePack, packLevel, type PackObject } from '../../src/net/wire/pack.js';
import { nominate, planPacks, type Sequences } from '../../src/net/wire/delta-refs.js';
import { MAX_BATCH } from '../../src/net/wire/batch.js';
import { sha256 } from '../../src/store/digest.js';
import { VmdnError } from '../../src/errors.js';
import { prng } from '../helpers/images.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { fuzzCases } from '../helpers/fuzz.js';
import { rleFrame, rss, skippableFrame } from '../helpers/zstd-frames.js';

const obj = (data: Buffer): PackObject => ({ digest: sha256(data), data });
const wanted = (os: PackObject[]) => new Set(os.map((o) => o.digest));

describe('pack frames', () => {
  const base = prng(7, 200_000);
  // a revision: the held object with a few bytes changed, and a new object much like another new one
  const edited = Buffer.from(base);
  edited.write('an edit in the middle', 100_000);
  const twin = Buffer.concat([prng(8, 50_000), Buffer.from('tail')]);
  const twin2 = Buffer.concat([twin.subarray(0, 50_000), Buffer.from('other tail')]);
  const objects = [obj(edited), obj(twin), obj(twin2), obj(Buffer.alloc(0))];

  it('round-trips, and the references make a revision nearly free', () => {
    const withRef = encodePack(objects, [base]);
    const back = decodePack(withRef, [base], wanted(objects), 'test');
    assert.deepEqual(back.map((o) => o.digest), objects.map((o) => o.digest));
    back.forEach((o, i) => assert.ok(Buffer.from(o.data).equals(objects[i]!.data)));
    const without = encodePack(objects, []);
    assert.deepEqual(decodePack(without, [], wanted(objects), 'test').map((o) => o.digest), objects.map((o) => o.digest));
    // prng data does not compress: without the reference the edited copy costs its full size
    assert.ok(without.length > 240_000, `${without.length}`);
    assert.ok(withRef.length < 60_000, `${withRef.length}: the edit and one twin, not 250 KB`);
  });

  it('fails to decode against other references, never yielding wrong bytes', () => {
    const f = encodePack(objects, [base]);
    const other = Buffer.from(base);
    other[100] = other[100]! ^ 1;
    assert.throws(() => decodePack(f, [other], wanted(objects), 'test'), (e: unknown) => e instanceof VmdnError && e.code === 'E_CORRUPT_OBJECT');
    assert.throws(() => decodePack(f, [], wanted(objects), 'test'), (e: unknown) => e instanceof VmdnError && e.code === 'E_CORRUPT_OBJECT');
  });

  it('refuses records not asked for, repeated, or a frame claiming more than the request can hold', () => {
    const f = encodePack(objects, []);
    assert.throws(() => decodePack(f, [], new Set([objects[0]!.digest]), 'test'), /not asked for/);
    const twice = encodePack([objects[1]!, objects[1]!], []);
    assert.throws(() => decodePack(twice, [], wanted(objects), 'test'), /not asked for \(or twice\)/);
    const big = encodePack([obj(Buffer.alloc(40 << 20))], []);
    assert.throws(() => decodePack(big, [], new Set([sha256(Buffer.alloc(40 << 20))]), 'test'), /more than 1 objects can be/);
  });

  it('refuses concatenated frames, undeclared or oversized content, trailing bytes and skippable frames, before decoding', () => {
    const f = encodePack(objects, [base]);
    const hostile: Array<[string, Buffer]> = [
      ['a pack, then 2 GiB of zeros without a declared size', Buffer.concat([f, rleFrame(2 ** 31, false)])],
      ['a pack, then 2 GiB of zeros declared', Buffer.concat([f, rleFrame(2 ** 31, true)])],
      ['a frame without a declared size', rleFrame(1 << 20, false)],
      ['a declared size over what the request can hold', rleFrame(2 ** 31, true)],
      ['trailing garbage', Buffer.concat([f, Buffer.from('xyz')])],
      ['a skippable frame after', Buffer.concat([f, skippableFrame(Buffer.alloc(100))])],
    ];
    for (const [what, bytes] of hostile) {
      const before = rss();
      const t0 = Date.now();
      assert.throws(() => decodePack(bytes, [base], wanted(objects), 'test'), (e: unknown) => e instanceof VmdnError && e.code === 'E_CORRUPT_OBJECT', what);
      assert.ok(Date.now() - t0 < 200, `${what}: ${Date.now() - t0} ms`);
      assert.ok(rss() - before < 32 << 20, `${what}: RSS grew ${Math.round((rss() - before) / 2 ** 20)} MiB`);
    }
  });

  it('seeded mutations of a frame are refused or decode to exactly the objects asked for', () => {
    const f = encodePack(objects, [base]);
    const seed = seedFrom('VMDN_FUZZ_SEED');
    const rand = mulberry32(seed);
    const cases = fuzzCases(400);
    let refused = 0;
    for (let i = 0; i < cases; i++) {
      const m = Buffer.from(f);
      const n = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < n; k++) m[Math.floor(rand() * m.length)] = Math.floor(rand() * 256);
      const cut = rand() < 0.2 ? m.subarray(0, Math.floor(rand() * m.length)) : m;
      try {
        const got = decodePack(cut, [base], wanted(objects), 'fuzz');
        for (const o of got) assert.equal(sha256(o.data), o.digest);
      } catch (err) {
        assert.ok(err instanceof VmdnError && err.code === 'E_CORRUPT_OBJECT', `seed ${seed} (VMDN_FUZZ_SEED) case ${i}: ${String(err)}`);
        refused++;
      }
    }
    assert.ok(refused > cases * 0.75, `seed ${seed}: ${refused} of ${cases} mutations refused`);
  });

  it('picks zstd levels by size: the best for deltas, fast for bulk', () => {
    assert.equal(packLevel(100_000), 19);
    assert.ok(packLevel(4 << 20) < 19 && packLevel(4 << 20) > packLevel(32 << 20));
  });
});

describe('pack references', () => {
  const d = (s: string) => sha256(Buffer.from(s));
  const [a, b, c, x, y, e, f, g] = ['a', 'b', 'c', 'x', 'y', 'e', 'f', 'g'].map(d) as string[];

  it('takes the held run between the same neighbours, and the held start when no neighbour is held', () => {
    const target: Sequences = new Map([['tree:1', [a, x, y, c]], ['file:1:var/lib/dpkg/status', [f, g]]]);
    const held: Sequences = new Map([['tree:1', [a, b, c]], ['file:1:var/lib/dpkg/status', [e]]]);
    const refs = nominate(target, [held], new Set([x, y, f, g]));
    // x, y replace b (between a and c): b first, then the neighbours (a margin of one on each side)
    assert.deepEqual(refs.get(x), [b, c, a]);
    assert.deepEqual(refs.get(y), refs.get(x));
    assert.deepEqual(refs.get(f), [e]);
    assert.equal(nominate(new Map([['other', [x]]]), [held], new Set([x])).size, 0, 'no held sequence of that name: no references');
  });

  it('cuts packs within the server limits and keeps only held references, each once', () => {
    const order = Array.from({ length: MAX_BATCH + 10 }, (_, i) => d(`o${i}`));
    const refsOf = new Map<string, string[]>(order.map((o) => [o, [a!, b!]]));
    const plans = planPacks(order, refsOf, (r) => r === a, () => 1000);
    assert.equal(plans.length, 2);
    assert.equal(plans[0]!.digests.length, MAX_BATCH);
    assert.deepEqual(plans[0]!.refs, [a]);
    const big = planPacks(order.slice(0, 3), refsOf, () => true, () => 20 << 20);
    assert.equal(big.length, 3, 'a pack holds at most 32 MiB of objects');
  });
});
