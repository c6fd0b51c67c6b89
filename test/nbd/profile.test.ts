/**
 * Boot profiles without a server: the format refuses anything malformed
 * (seeded fuzz), the recorder lists each object once in first-read order,
 * and the store's pointer is atomic, kept by gc while the image is named
 * and dropped (with its object) once no name keeps the manifest.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { decodeProfile, encodeProfile, PROFILE_KIND, PROFILE_VERSION, type BootProfile } from '../../src/model/profile.js';
import { ProfileRecorder, loadProfile } from '../../src/nbd/profile.js';
import { BlockDevice } from '../../src/nbd/device.js';
import { fillOrder } from '../../src/nbd/fill.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { collectGarbage } from '../../src/images/maintenance.js';
import type { Manifest } from '../../src/model/manifest.js';
import { VmdnError } from '../../src/errors.js';
import { MemDisk } from '../helpers/memdisk.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { fuzzCases } from '../helpers/fuzz.js';
import { tmpDir } from '../helpers/tmp.js';

const dg = (s: string) => createHash('sha256').update(s).digest('hex');

/** A manifest of `n` 64 KiB chunks with a hole after every third, chunk i's digest dg(`c${i % distinct}`). */
function manifestOf(n: number, distinct = n): Manifest {
  const chunks: Array<[number, number, string]> = [];
  let at = 0;
  for (let i = 0; i < n; i++) {
    chunks.push([at, 65536, dg(`c${i % distinct}`)]);
    at += i % 3 === 2 ? 2 * 65536 : 65536;
  }
  return { kind: 'vmdn.manifest', version: 1, virtualSize: at + 65536, source: { format: 'raw', clusterSize: 65536 }, chunker: 'fixed:65536', allocated: 0, chunks } as Manifest;
}

function profileOf(n: number): BootProfile {
  return { kind: PROFILE_KIND, version: PROFILE_VERSION, manifest: dg('m'), reads: Array.from({ length: n }, (_, i) => [i * 3, dg(`c${i}`)] as [number, string]) };
}

describe('boot profile format', () => {
  it('round-trips, and refuses a profile of another manifest or with objects not in the image', () => {
    const p = profileOf(5);
    const bytes = encodeProfile(p);
    assert.deepEqual(decodeProfile(bytes, 't'), p);
    const chunks = new Set(manifestOf(8).chunks.map((c) => c[2]));
    assert.deepEqual(decodeProfile(bytes, 't', { manifest: dg('m'), chunks }).reads, p.reads);
    assert.throws(() => decodeProfile(bytes, 't', { manifest: dg('other'), chunks }), /recorded on manifest/);
    assert.throws(() => decodeProfile(bytes, 't', { manifest: dg('m'), chunks: new Set([...chunks].slice(1)) }), /not in the image/);
  });

  it('refuses each malformed field', () => {
    const good = profileOf(3);
    const cases: Array<[string, unknown]> = [
      ['kind', { ...good, kind: 'vmdn.manifest' }],
      ['version', { ...good, version: 2 }],
      ['manifest', { ...good, manifest: 'ab' }],
      ['reads', { ...good, reads: {} }],
      ['shape', { ...good, reads: [[0, dg('c0'), 1]] }],
      ['order', { ...good, reads: [[5, dg('c0')], [4, dg('c1')]] }],
      ['negative', { ...good, reads: [[-1, dg('c0')]] }],
      ['fraction', { ...good, reads: [[0.5, dg('c0')]] }],
      ['twice', { ...good, reads: [[0, dg('c0')], [1, dg('c0')]] }],
      ['digest', { ...good, reads: [[0, dg('c0').toUpperCase()]] }],
      ['array', [good]],
    ];
    for (const [what, p] of cases) {
      assert.throws(() => decodeProfile(new TextEncoder().encode(JSON.stringify(p)), what), (e: unknown) => e instanceof VmdnError && e.code === 'E_MANIFEST', what);
    }
    assert.throws(() => decodeProfile(new Uint8Array([0xff, 0xfe]), 'bytes'), /not valid JSON/);
  });

  it('fuzz: 3000 mutated profiles either decode to a valid profile or fail with E_MANIFEST, never anything else', () => {
    const seed = seedFrom('VMDN_FUZZ_SEED');
    const cases = fuzzCases(3000);
    const rnd = mulberry32(seed);
    const chunks = new Set(manifestOf(64).chunks.map((c) => c[2]));
    const base = encodeProfile(profileOf(40));
    const text = new TextDecoder().decode(base);
    const tokens = ['"', ',', '[', ']', '{', '}', '-1', '1e308', 'null', '"vmdn.boot-profile"', '0.5', ' ', '\\u0000', '9007199254740993'];
    let accepted = 0;
    for (let i = 0; i < cases; i++) {
      let m: Uint8Array;
      const kind = i % 4;
      if (kind === 0) {
        m = Uint8Array.from(base);
        for (let k = 1 + Math.floor(rnd() * 4); k > 0; k--) m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256);
      } else if (kind === 1) {
        m = base.subarray(0, Math.floor(rnd() * base.length));
      } else {
        const at = Math.floor(rnd() * text.length);
        const cut = kind === 2 ? Math.floor(rnd() * 70) : 0;
        m = new TextEncoder().encode(text.slice(0, at) + tokens[Math.floor(rnd() * tokens.length)] + text.slice(at + cut));
      }
      try {
        const p = decodeProfile(m, `fuzz ${i}`, i % 2 ? { manifest: dg('m'), chunks } : undefined);
        accepted++;
        // what is accepted is a profile readers can trust
        assert.equal(new Set(p.reads.map((r) => r[1])).size, p.reads.length);
      } catch (err) {
        assert.ok(err instanceof VmdnError && err.code === 'E_MANIFEST', `seed ${seed} case ${i}: ${(err as Error).stack}`);
      }
    }
    assert.ok(accepted < cases, `seed ${seed}: every mutant was accepted`);
  });
});

describe('ProfileRecorder', () => {
  it('lists each object once, in the order a client first reads it (reads of holes record nothing)', async () => {
    // 12 chunks, 8 distinct: chunks 8..11 repeat the objects of 0..3
    const m = manifestOf(12, 8);
    const rec = new ProfileRecorder(m, dg('m'));
    const dev = new BlockDevice(new MemDisk(new Uint8Array(m.virtualSize)), null);
    dev.onBaseRead = (o, l) => rec.touch(o, l);
    const start = (i: number) => m.chunks[i]![0];
    await dev.read(start(5) + 100, 10); // chunk 5
    await dev.read(start(2) + 65536, 4096); // the hole after chunk 2: nothing
    await dev.read(start(0) + 65000, 1000); // chunks 0 and 1
    await dev.read(start(9), 10); // chunk 9 = object 1: already listed
    await dev.read(start(5), 65536); // again
    await dev.read(start(11), 65536 + 1); // object 3, then chunk 11 is the last: nothing more
    assert.deepEqual(rec.digests, [dg('c5'), dg('c0'), dg('c1'), dg('c3')]);
    const p = decodeProfile(rec.encode(), 'rec', { manifest: dg('m'), chunks: new Set(m.chunks.map((c) => c[2])) });
    assert.deepEqual(p.reads.map((r) => r[1]), rec.digests);
  });

  it('the fill order is the profile first (objects of the image only), then disk order, each object once', () => {
    const m = manifestOf(6);
    assert.deepEqual(fillOrder(m, [dg('c4'), dg('nope'), dg('c1')]), ['c4', 'c1', 'c0', 'c2', 'c3', 'c5'].map(dg));
    assert.deepEqual(fillOrder(m), ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'].map(dg));
  });
});

describe('profiles in a local store', () => {
  it('save points the manifest at the profile (a new recording replaces it); gc keeps it while the image is named, drops it after', async () => {
    const t = tmpDir('vmdn-profile-store-');
    const store = await LocalStore.open(t.dir);
    try {
      const manifestBytes = new TextEncoder().encode('{"stand-in manifest"}');
      const { digest: mdig } = await store.put(manifestBytes);
      await store.names.set({ name: 'img', tag: '1', manifest: mdig, created: new Date().toISOString(), virtualSize: 0, allocatedSize: 0, dataSize: 0, format: 'raw' }, [mdig]);
      const m = manifestOf(4);
      const first = new ProfileRecorder(m, mdig);
      assert.equal(await first.save(store), undefined, 'no reads: nothing stored');
      first.touch(0, 1);
      const p1 = (await first.save(store))!;
      assert.equal(await store.getProfile(mdig), p1);
      const second = new ProfileRecorder(m, mdig);
      second.touch(m.chunks[2]![0], 1);
      const p2 = (await second.save(store))!;
      assert.notEqual(p1, p2);
      assert.equal(await store.getProfile(mdig), p2);
      const warned: string[] = [];
      assert.deepEqual((await loadProfile(store, p2, mdig, m, (w) => warned.push(w)))?.order, [dg('c2')]);
      assert.equal(await loadProfile(store, p2, dg('other'), m, (w) => warned.push(w)), undefined);
      assert.match(warned.join('\n'), /refused, prefetching in disk order/);

      await collectGarbage(store);
      assert.equal(await store.getProfile(mdig), p2);
      assert.ok(await store.has(p2), 'gc took the profile of a named image');
      assert.ok(!(await store.has(p1)), 'the replaced profile is garbage');

      await store.names.remove('img', '1');
      await collectGarbage(store);
      assert.equal(await store.getProfile(mdig), undefined);
      assert.ok(!(await store.has(p2)));
      await assert.rejects(store.setProfile(mdig, dg('absent')), /not in the store index/);
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});
