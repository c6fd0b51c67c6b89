/**
 * Seeded mutation fuzzing of the ext4 reader: a small valid image gets a few
 * bytes of its superblock, group descriptors, inode table, extent block,
 * directory block, xattr block (or anywhere) overwritten; opening and
 * exercising it must succeed or throw a VmdnError, within a time bound.
 *   VMDN_FUZZ_SEED=<n>   reproduce a run (the seed is printed)
 *   VMDN_FUZZ_CASES=<n>  number of cases (default 1200)
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openExt4 } from '../../src/fs/ext4/ext4.js';
import { VmdnError } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { smallImage, memDisk, exercise, type SmallImage } from './ext4-fixtures.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';

const SEED = seedFrom('VMDN_FUZZ_SEED');
const CASES = Number(process.env.VMDN_FUZZ_CASES ?? 1200);
const CASE_TIMEOUT_MS = 3000;

const t = tmpDir('vmdn-ext4-fuzz-');
let img: SmallImage;
before(() => {
  img = smallImage(t.dir);
});
after(() => t.cleanup());

it(`mutated metadata yields only VmdnError, never a hang (seed ${SEED}, ${CASES} cases)`, async () => {
  console.log(`ext4 fuzz seed: ${SEED} (VMDN_FUZZ_SEED=${SEED} to reproduce)`);
  const rnd = mulberry32(SEED);
  const bs = img.bs;
  const regions: Array<[string, number, number]> = [
    ['superblock', 1024, 2048],
    ['group descriptors', 2 * bs, 3 * bs],
    ['inode table', img.inodeTable[0] * bs, (img.inodeTable[0] + 4) * bs],
    ['extent block', img.fragEtb * bs, (img.fragEtb + 1) * bs],
    ['directory block', img.dirABlock * bs, (img.dirABlock + 1) * bs],
    ['xattr block', img.xattrBlock * bs, (img.xattrBlock + 1) * bs],
    ['anywhere', 0, img.bytes.length],
  ];
  const counts = { ok: 0, vmdn: 0 };
  for (let c = 0; c < CASES; c++) {
    const [name, lo, hi] = regions[Math.floor(rnd() * regions.length)];
    const b = Buffer.from(img.bytes);
    const n = 1 + Math.floor(rnd() * 6);
    const edits: string[] = [];
    for (let k = 0; k < n; k++) {
      const off = lo + Math.floor(rnd() * (hi - lo));
      const kind = rnd();
      const v = kind < 0.4 ? Math.floor(rnd() * 256) : kind < 0.7 ? b[off] ^ (1 << Math.floor(rnd() * 8)) : kind < 0.85 ? 0 : 0xff;
      b[off] = v;
      edits.push(`${off}=${v}`);
    }
    const what = `case ${c} (${name}: ${edits.join(',')})`;
    let timer: NodeJS.Timeout | undefined;
    const run = (async () => exercise(await openExt4(memDisk(b)), 16 << 20))();
    const timeout = new Promise<never>((_, rej) => {
      timer = setTimeout(() => rej(new Error(`${what}: timed out after ${CASE_TIMEOUT_MS} ms`)), CASE_TIMEOUT_MS);
    });
    try {
      await Promise.race([run, timeout]);
      counts.ok++;
    } catch (err) {
      if (!(err instanceof VmdnError)) assert.fail(`${what}: ${(err as Error)?.stack ?? String(err)} [seed ${SEED}]`);
      counts.vmdn++;
    } finally {
      clearTimeout(timer);
    }
  }
  console.log(`ext4 fuzz: ${counts.ok} read fine, ${counts.vmdn} rejected with VmdnError`);
});
