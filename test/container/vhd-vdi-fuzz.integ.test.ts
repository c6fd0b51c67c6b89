/**
 * Seeded mutation fuzzing of the VHD and VDI readers. Valid qemu-made images
 * (and a differencing VHD beside its parent) get a few bytes of their
 * footers, headers, BAT / block map (or anything else) overwritten, VHD
 * checksums mostly recomputed so the mutation reaches past them; opening,
 * walking extents and reading must then succeed or throw a VmdnError,
 * quickly. Any other exception is a reader bug.
 *   VMDN_FUZZ_SEED=<n>   reproduce a run (the seed is printed)
 *   VMDN_FUZZ_CASES=<n>  cases per reader (default 1200)
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { exerciseDisk, fuzzLoop } from '../helpers/fuzz.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { MiB, qemuImg, writeRandom, makeDifferencing, fixVhdChecksums, dynOffset, batOffset } from './vhd-vdi-fixtures.js';

const SEED = seedFrom('VMDN_FUZZ_SEED');
const CASES = Number(process.env.VMDN_FUZZ_CASES ?? 1200);
const CASE_TIMEOUT_MS = 2000;
const SIZE = 3 * MiB;

const t = tmpDir('vmdn-vhdvdi-fuzz-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
interface Base { name: string; bytes: Buffer; regions: Array<[number, number]> }
const bases: { vhd: Base[]; vdi: Base[] } = { vhd: [], vdi: [] };

before(async () => {
  const writes: Array<[number, number]> = [[0, 64 << 10], [MiB + 512, 50 << 10], [2 * MiB - 4096, 8192], [SIZE - 4096, 4096]];
  await qemuImg('create', '-f', 'raw', at('src.raw'), String(SIZE));
  await writeRandom(t.dir, 'raw', at('src.raw'), 3, writes);
  await qemuImg('convert', '-O', 'vpc', '-o', 'subformat=fixed', at('src.raw'), at('fixed.vhd'));
  await qemuImg('convert', '-O', 'vpc', at('src.raw'), at('parent.vhd'));
  const size = JSON.parse(await qemuImg('info', '--output=json', '-f', 'vpc', at('parent.vhd')))['virtual-size'] as number;
  await qemuImg('create', '-f', 'vpc', at('child.vhd'), String(size));
  await writeRandom(t.dir, 'vpc', at('child.vhd'), 4, [[4096, 4096], [2 * MiB + 512, 4096]]);
  await makeDifferencing(at('child.vhd'), at('parent.vhd'), 'parent.vhd');
  await qemuImg('convert', '-O', 'vdi', at('src.raw'), at('dynamic.vdi'));
  await qemuImg('convert', '-O', 'vdi', '-o', 'static=on', at('src.raw'), at('static.vdi'));
  for (const name of ['fixed.vhd', 'parent.vhd', 'child.vhd']) {
    const b = await fs.readFile(at(name));
    const regions: Array<[number, number]> = [[0, 512], [b.length - 512, 512], [0, b.length]];
    if (name !== 'fixed.vhd') regions.push([dynOffset(b), 1024], [batOffset(b), 64], [b.readUInt32BE(batOffset(b)) * 512, 512]);
    bases.vhd.push({ name, bytes: b, regions });
  }
  for (const name of ['dynamic.vdi', 'static.vdi']) {
    const b = await fs.readFile(at(name));
    bases.vdi.push({ name, bytes: b, regions: [[0x140, 0xc0], [0x40, 0x20], [b.readUInt32LE(0x154), 64], [0, b.length]] });
  }
});

after(() => t.cleanup());

function mutate(b: Buffer, base: Base, le: boolean, r: () => number): { buf: Buffer; what: string } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const int = (n: number): number => Math.floor(r() * n);
  if (r() < 0.04) {
    const len = int(b.length);
    return { buf: b.subarray(0, len), what: `truncate to ${len}` };
  }
  // an earlier cut may have left no word to overwrite (a RangeError in the harness, not the reader)
  if (b.length < 8) return { buf: b, what: 'too short to mutate' };
  const [lo, len] = pick(base.regions);
  const off = Math.max(0, Math.min(b.length - 8, lo + int(len)));
  const op = pick(['bit', 'byte', 'u32', 'u32', 'u64'] as const);
  const v32 = pick([0, 1, 2, 3, 4, 512, 0x200, 0x7fffffff, 0xfffffffe, 0xffffffff, b.length, b.length >>> 9, MiB, 2 * MiB, int(2 ** 32)]);
  switch (op) {
    case 'bit': b[off] ^= 1 << int(8); break;
    case 'byte': b[off] = int(256); break;
    case 'u32': (le ? b.writeUInt32LE(v32, off & ~3) : b.writeUInt32BE(v32, off & ~3)); break;
    case 'u64': {
      const v = pick([0n, 1n << 63n, BigInt(b.length), BigInt(b.length) * 512n, (1n << 64n) - 1n, BigInt(int(2 ** 32)) << 9n]);
      (le ? b.writeBigUInt64LE(v, off & ~7) : b.writeBigUInt64BE(v, off & ~7));
      break;
    }
  }
  return { buf: b, what: `${op} at ${off}` };
}

for (const kind of ['vhd', 'vdi'] as const) {
  it(`${kind} reader survives ${CASES} mutated images (VMDN_FUZZ_SEED=${SEED})`, async (tc) => {
    tc.diagnostic(`VMDN_FUZZ_SEED=${SEED}`);
    const { outcomes, failures, ms } = await fuzzLoop(CASES, CASE_TIMEOUT_MS, async (i) => {
      const r = mulberry32((SEED ^ Math.imul(i + 1, 0x9e3779b9) ^ (kind === 'vdi' ? 0x5bd1e995 : 0)) >>> 0);
      const base = bases[kind][Math.floor(r() * bases[kind].length)];
      let buf: Buffer = Buffer.from(base.bytes);
      const what: string[] = [];
      for (let k = 1 + Math.floor(r() * 3); k > 0; k--) {
        const m = mutate(buf, base, kind === 'vdi', r);
        buf = m.buf;
        what.push(m.what);
      }
      if (kind === 'vhd' && r() < 0.75) fixVhdChecksums(buf);
      // beside parent.vhd, so a mutated child still finds its parent
      const file = at(`fz-${kind}-${i % 2}.${kind}`);
      await fs.writeFile(file, buf);
      return { what: `${base.name}: ${what.join('; ')}`, run: async () => `ok-${(await exerciseDisk(file, r)).format}` };
    });
    tc.diagnostic(`${CASES} cases in ${ms.toFixed(0)} ms: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    assert.deepEqual(failures, [], `seed ${SEED}: reader threw non-VmdnError exceptions`);
    const opened = [...outcomes].filter(([k]) => k.startsWith('ok-')).reduce((s, [, v]) => s + v, 0);
    assert.ok(opened > CASES / 10, `too few mutated images opened successfully (${opened})`);
    const refused = CASES - opened;
    assert.ok(refused > CASES / 10, `too few mutated images refused (${refused}): the mutations test nothing`);
  });
}
