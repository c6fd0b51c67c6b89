/**
 * Package tars are cut so that each big regular member is chunked alone,
 * exactly as the same file is chunked in an image (the objects are shared);
 * the rest is covered too, whatever sizes the pieces arrive in. Header
 * parsing is fuzzed: bad input is a VmdnError, never a hang or a crash.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import tar from 'tar-stream';
import { LocalStore } from '../../src/store/local/local-store.js';
import { MemDisk } from '../../src/container/mem-disk.js';
import { importChunks } from '../../src/strategy/chunks/import.js';
import { parseChunkerSpec } from '../../src/strategy/chunker.js';
import { DEFAULT_CHUNKER_SPEC, DEFAULT_MIN_FILE } from '../../src/strategy/defaults.js';
import { TarBoundaries, TarChunks, tarNumber } from '../../src/strategy/packages/tar.js';
import { StreamReader } from '../../src/strategy/stream-chunks.js';
import { VmdnError } from '../../src/errors.js';
import { prng } from '../helpers/images.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { fuzzCases } from '../helpers/fuzz.js';
import { tmpDir } from '../helpers/tmp.js';

const CHUNKER = parseChunkerSpec(DEFAULT_CHUNKER_SPEC);

async function makeTar(members: Array<{ name: string; data?: Buffer; type?: 'directory' | 'symlink'; linkname?: string }>): Promise<Buffer> {
  const pack = tar.pack();
  const parts: Buffer[] = [];
  pack.on('data', (b: unknown) => void parts.push(b as Buffer));
  const done = new Promise<void>((res) => pack.on('end', () => res()));
  for (const m of members) {
    await new Promise<void>((res, rej) => pack.entry({ name: m.name, type: m.type ?? 'file', linkname: m.linkname, size: m.data?.length ?? 0 }, m.data ?? Buffer.alloc(0), (e) => (e ? rej(e) : res())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(parts);
}

describe('package tars: big members chunked as files are', () => {
  let t: ReturnType<typeof tmpDir>;
  let store: LocalStore;
  before(async () => {
    t = tmpDir();
    store = await LocalStore.open(path.join(t.dir, 'store'));
  });
  after(async () => {
    await store.close();
    t.cleanup();
  });

  it('each big member gets the chunks the same file gets alone; every byte reads back, whatever the piece sizes', async () => {
    const big = prng(11, 300_000);
    const big2 = Buffer.concat([prng(12, 70_000), Buffer.alloc(200_000), prng(13, 40_000)]); // a zero run inside
    const archive = await makeTar([
      { name: './', type: 'directory' },
      { name: './usr/bin/tool', data: big },
      { name: './usr/share/doc/x/README', data: Buffer.from('small\n'.repeat(100)) },
      { name: './usr/lib/x.so', data: big2 },
      { name: './usr/lib/link.so', type: 'symlink', linkname: 'x.so' },
      { name: './etc/tiny.conf', data: prng(14, DEFAULT_MIN_FILE - 1) },
    ]);
    const alone = async (b: Buffer) => (await importChunks(new MemDisk(b), store, { chunker: CHUNKER })).manifest.chunks.map((c) => c[2]);
    const seed = seedFrom('VMDN_FUZZ_SEED');
    const rand = mulberry32(seed);
    for (let round = 0; round < 4; round++) {
      const tc = new TarChunks(CHUNKER, DEFAULT_MIN_FILE, store, {});
      for (let off = 0; off < archive.length; ) {
        const n = Math.min(archive.length - off, 1 + Math.floor(rand() * (round === 0 ? 513 : 100_000)));
        await tc.push(archive.subarray(off, off + n));
        off += n;
      }
      const entries = await tc.finish();
      assert.equal(tc.length, archive.length);
      const back = await new StreamReader(entries, store).read(0, archive.length);
      assert.ok(back.equals(archive), `seed ${seed} round ${round}: reassembled tar differs`);
      const digests = entries.map((e) => e[2]);
      for (const b of [big, big2]) {
        const want = await alone(b);
        const at = archive.indexOf(b.subarray(0, 64));
        const mine = entries.filter(([o]) => o >= at && o < at + b.length).map((e) => e[2]);
        assert.deepEqual(mine, want, `seed ${seed}: a big member is chunked as the file alone`);
        assert.equal(entries.find(([o]) => o === at)?.[0], at, 'a chunk starts at the member\'s first byte');
      }
      assert.ok(digests.length > 10);
    }
  });

  it('reads octal and base-256 sizes; refuses what is neither', () => {
    assert.equal(tarNumber(Buffer.from('00000001750\0')), 1000);
    assert.equal(tarNumber(Buffer.from('          \0\0')), 0);
    assert.equal(tarNumber(Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0])), 65536);
    assert.throws(() => tarNumber(Buffer.from('12345678901x')), (e: unknown) => e instanceof VmdnError && e.code === 'E_FORMAT');
  });

  it('fuzz: mutated headers give cuts in order, or a VmdnError', async () => {
    const archive = await makeTar([{ name: 'a', data: prng(21, 40_000) }, { name: 'b', data: prng(22, 100) }, { name: 'c', data: prng(23, 20_000) }]);
    const seed = seedFrom('VMDN_FUZZ_SEED');
    const rand = mulberry32(seed);
    for (let i = 0, cases = fuzzCases(2000); i < cases; i++) {
      const m = Buffer.from(archive);
      for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) m[Math.floor(rand() * Math.min(m.length, 70_000))] = Math.floor(rand() * 256);
      try {
        const cuts = new TarBoundaries(DEFAULT_MIN_FILE).feed(m);
        for (let j = 1; j < cuts.length; j++) assert.ok(cuts[j]! >= cuts[j - 1]!, `seed ${seed} case ${i}: cuts out of order`);
      } catch (e) {
        assert.ok(e instanceof VmdnError, `seed ${seed} case ${i}: ${e}`);
      }
    }
  });
});
