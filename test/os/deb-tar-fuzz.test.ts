/**
 * Seeded mutation fuzzing of the tar reader a .deb's data goes through
 * (os/deb.ts readTar + indexTar, behind dpkg-deb --fsys-tarfile): header
 * fields overwritten (with a valid checksum half the time, so mutations reach
 * the fields behind it), bytes flipped, the stream cut. Each mutant must index
 * or fail with a VmdnError, quickly.
 *   VMDN_FUZZ_SEED=<n>   reproduce a run (the seed is printed)
 *   VMDN_FUZZ_CASES=<n>  cases (default: a CI-sized count)
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { indexTar, readTar } from '../../src/os/deb.js';
import { VmdnError } from '../../src/errors.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { fuzzCases, withTimeout } from '../helpers/fuzz.js';
import { int, pick } from '../helpers/mutate.js';
import { prng } from '../helpers/images.js';
import { tarOf } from '../container/ova-fixtures.js';

const SEED = seedFrom('VMDN_FUZZ_SEED');

it('a tar cut inside a member\'s body is E_FORMAT for its reader, not a bare Error', async () => {
  // found by the fuzz below (seed 983053277, case 0): tar-stream's "Unexpected end of data" escaped from the body
  const b = tarOf([['./usr/bin/a', prng(1, 1500)]]);
  await assert.rejects(indexTar(readTar(Readable.from([b.subarray(0, 900)]), 'cut.deb'), 'cut.deb'), (e: unknown) => e instanceof VmdnError && e.code === 'E_FORMAT' && /cut\.deb: not a readable package/.test(e.message));
});

it('a member whose size field does not parse is E_FORMAT, not a hang', async () => {
  // found by npm run fuzz (seed 2492106773, case 3): a base-256 size tar-stream reads as null, then it waits forever
  const b = tarOf([['./usr/bin/a', prng(1, 1500)], ['./etc/b', Buffer.from('x\n')]]);
  b[124] = 0xee;
  b.fill(0x20, 148, 156);
  let s = 0;
  for (let j = 0; j < 512; j++) s += b[j]!;
  b.write(`${s.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  await assert.rejects(withTimeout(indexTar(readTar(Readable.from([b]), 'bad.deb'), 'bad.deb'), 5000), (e: unknown) => e instanceof VmdnError && e.code === 'E_FORMAT' && /bad size/.test(e.message));
});

it('.deb data tars: mutants index or fail with VmdnError', async () => {
  const cases = fuzzCases(500);
  console.log(`# deb tar fuzz: ${cases} cases, seed ${SEED} (VMDN_FUZZ_SEED=${SEED} to replay)`);
  const r = mulberry32(SEED);
  const members: Array<[string, Buffer]> = [['./usr/bin/a', prng(1, 1500)], ['./etc/b.conf', Buffer.from('x = 1\n')], ['./usr/share/c', prng(2, 700)]];
  const base = tarOf(members);
  const headers = [0, 512 + 1536, 512 + 1536 + 1024];
  let ok = 0;
  for (let i = 0; i < cases; i++) {
    let b = Buffer.from(base);
    for (let k = 0, n = 1 + int(r, 4); k < n; k++) {
      const h = pick(r, headers);
      const how = int(r, 5);
      if (how === 0) b = b.subarray(0, int(r, b.length));
      else if (how === 1 && h + 512 <= b.length) b.write(pick(r, ['77777777777', '\x80\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff', '00000000000', '7', ' ', '\0', '../x', '/etc/shadow', 'x'.repeat(100)]), h + pick(r, [0, 100, 124, 156, 157, 257, 345]), 'latin1');
      else if (how === 2 && h + 512 <= b.length) b[h + 156] = pick(r, [0x30, 0, 0x31, 0x32, 0x35, 0x78, 0x67, 0x4c, 0x4b]);
      else if (b.length > 0) b[Math.min(b.length - 1, h + int(r, 512))] = int(r, 256);
      if (r() < 0.5 && h + 512 <= b.length) {
        b.fill(0x20, h + 148, h + 156);
        let s = 0;
        for (let j = h; j < h + 512; j++) s += b[j]!;
        b.write(`${s.toString(8).padStart(6, '0')}\0 `, h + 148, 'latin1');
      }
    }
    try {
      const pieces = [b.subarray(0, int(r, b.length + 1))];
      pieces.push(b.subarray(pieces[0]!.length));
      const idx = await withTimeout(indexTar(readTar(Readable.from(pieces), 'fuzz'), 'fuzz'), 2000);
      for (const [p, f] of idx) assert.ok(!p.split('/').includes('..') && Number.isSafeInteger(f.size), `${p}`);
      ok++;
    } catch (err) {
      assert.ok(err instanceof VmdnError, `case ${i} (VMDN_FUZZ_SEED=${SEED}): ${err instanceof Error ? err.stack : String(err)}`);
    }
  }
  console.log(`# deb tar: ${ok} of ${cases} mutants indexed`);
  assert.ok(ok > 0 && ok < cases, `seed ${SEED}: ${ok} of ${cases} indexed: the mutations test nothing`);
});
