/**
 * Seeded mutation fuzzing of the VHDX reader. Valid images (qemu dynamic and
 * fixed, a differencing child beside its parent, a dirty one with a log
 * entry to replay) get a few bytes of their headers, region tables,
 * metadata, BAT or log (or anything else) overwritten, checksums mostly
 * recomputed so the mutation reaches past them; opening, walking extents and
 * reading must then succeed or throw a VmdnError, quickly.
 *   VMDN_FUZZ_SEED=<n>   reproduce a run (the seed is printed)
 *   VMDN_FUZZ_CASES=<n>  cases (default 1000)
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { tmpDir } from '../helpers/tmp.js';
import { exerciseDisk, fuzzLoop } from '../helpers/fuzz.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { prng } from '../helpers/images.js';
import {
  MiB, qemuImg, writeRandom, makeDifferencing, fixCrc, region, curHeader, batAt, blockOffset, logEntry, dirty,
  HEADERS, REGION_TABLES,
} from './vhdx-fixtures.js';

const SEED = seedFrom('VMDN_FUZZ_SEED');
const CASES = Number(process.env.VMDN_FUZZ_CASES ?? 1000);
const CASE_TIMEOUT_MS = 2000;
const SIZE = 3 * MiB;

const t = tmpDir('vmdn-vhdx-fuzz-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
interface Base { name: string; file: string; bytes: Buffer; work: Buffer; regions: Array<[number, number]>; log: number }

/** Write `ranges` of `buf` into `file` in place. */
async function patch(file: string, buf: Buffer, ranges: Array<[number, number]>): Promise<void> {
  const fh = await fs.open(file, 'r+');
  try {
    for (const [s, n] of ranges) await fh.write(buf, s, Math.min(n, buf.length - s), s);
  } finally {
    await fh.close();
  }
}
const bases: Base[] = [];

before(async () => {
  const writes: Array<[number, number]> = [[0, 64 << 10], [MiB + 512, 50 << 10], [SIZE - 4096, 4096]];
  await qemuImg('create', '-f', 'vhdx', '-o', 'block_size=1M', at('parent.vhdx'), String(SIZE));
  await writeRandom(t.dir, 'vhdx', at('parent.vhdx'), 3, writes);
  await qemuImg('create', '-f', 'vhdx', '-o', 'subformat=fixed,block_size=1M', at('fixed.vhdx'), String(SIZE));
  await writeRandom(t.dir, 'vhdx', at('fixed.vhdx'), 3, writes);
  await qemuImg('create', '-f', 'vhdx', '-o', 'block_size=1M', at('child.vhdx'), String(SIZE));
  await writeRandom(t.dir, 'vhdx', at('child.vhdx'), 4, [[4096, 4096]]);
  await makeDifferencing(at('child.vhdx'), at('parent.vhdx'), 'parent.vhdx');
  const d = await fs.readFile(at('parent.vhdx'));
  const guid = randomBytes(16);
  dirty(d, guid, [[0, logEntry(3n, guid, [{ kind: 'data', fileOffset: blockOffset(d, 0), data: prng(8, 4096) }, { kind: 'zero', fileOffset: region(d, 'bat').offset, length: 4096 }], d.length)]]);
  await fs.writeFile(at('dirty.vhdx'), d);
  for (const name of ['parent.vhdx', 'fixed.vhdx', 'child.vhdx', 'dirty.vhdx']) {
    const b = await fs.readFile(at(name));
    const h = curHeader(b);
    const log = Number(b.readBigUInt64LE(h + 72));
    const meta = region(b, 'meta').offset;
    const regions: Array<[number, number]> = [
      [0, 16], [h, 96], [REGION_TABLES[0], 80], [meta, 256], [meta + (64 << 10), 64], [batAt(b, 0), 64], [log, 8192], [0, b.length],
    ];
    if (name === 'child.vhdx') regions.push([meta + (512 << 10), 128]);
    // beside parent.vhdx, so a mutated child still finds its parent
    const file = at(`fz-${name}`);
    await fs.writeFile(file, b);
    bases.push({ name, file, bytes: b, work: Buffer.from(b), regions, log });
  }
});

after(() => t.cleanup());

function mutate(b: Buffer, base: Base, r: () => number): { buf: Buffer; what: string; at?: number } {
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
  const op = pick(['bit', 'byte', 'u32', 'u32', 'u64', 'u64'] as const);
  switch (op) {
    case 'bit': b[off] ^= 1 << int(8); break;
    case 'byte': b[off] = int(256); break;
    case 'u32': b.writeUInt32LE(pick([0, 1, 2, 4096, 0x7fffffff, 0xffffffff, b.length, MiB, 2 * MiB, 256 * MiB, int(2 ** 32)]), off & ~3); break;
    case 'u64': {
      const v = pick([0n, 6n, 7n, 2n, 1n << 63n, BigInt(b.length), (BigInt(Math.floor(b.length / MiB)) << 20n) | 6n, (1n << 20n) | 6n, (1n << 64n) - 1n, BigInt(int(2 ** 32)) << 20n]);
      b.writeBigUInt64LE(v, off & ~7);
      break;
    }
  }
  return { buf: b, what: `${op} at ${off}`, at: off & ~7 };
}

/**
 * Recompute the checksums a mutation at `touched` offsets may have broken
 * (headers, region tables, the log entry at the start of the log); returns
 * the byte ranges rewritten.
 */
function fixAll(b: Buffer, base: Base, touched: number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const hit = (s: number, n: number): boolean => touched.some((o) => o + 8 > s && o < s + n);
  for (const h of HEADERS) if (hit(h, 4096)) { fixCrc(b, h, 4096); out.push([h, 4096]); }
  for (const rt of REGION_TABLES) if (hit(rt, 64 << 10)) { fixCrc(b, rt, 64 << 10); out.push([rt, 64 << 10]); }
  if (b.readUInt32LE(base.log) === 0x65676f6c) {
    const len = b.readUInt32LE(base.log + 8);
    if (len > 0 && len <= MiB && base.log + len <= b.length && hit(base.log, len)) { fixCrc(b, base.log, len); out.push([base.log, len]); }
  }
  return out;
}

it(`vhdx reader survives ${CASES} mutated images (VMDN_FUZZ_SEED=${SEED})`, async (tc) => {
  tc.diagnostic(`VMDN_FUZZ_SEED=${SEED}`);
  assert.equal(HEADERS.length, 2);
  const { outcomes, failures, ms } = await fuzzLoop(CASES, CASE_TIMEOUT_MS, async (i) => {
    const r = mulberry32((SEED ^ Math.imul(i + 1, 0x9e3779b9) ^ 0x7d1c3a5b) >>> 0);
    const base = bases[Math.floor(r() * bases.length)];
    // Mutations are written into a copy of the base file in place and undone after the case (rewriting
    // 8 MiB images 1200 times would be most of the run); truncations get a file of their own.
    let buf: Buffer = base.work; // restored from base.bytes after the case
    const what: string[] = [];
    const touched: number[] = [];
    for (let k = 1 + Math.floor(r() * 3); k > 0; k--) {
      const m = mutate(buf, base, r);
      buf = m.buf;
      what.push(m.what);
      if (m.at !== undefined) touched.push(m.at);
    }
    const ranges: Array<[number, number]> = touched.map((o) => [o, 8]);
    if (buf.length === base.bytes.length && r() < 0.75) ranges.push(...fixAll(buf, base, touched));
    let file = base.file;
    if (buf.length !== base.bytes.length) {
      file = at('fz-cut.vhdx');
      await fs.writeFile(file, buf);
    } else {
      await patch(file, buf, ranges);
    }
    return {
      what: `${base.name}: ${what.join('; ')}`,
      run: async () => `ok-${(await exerciseDisk(file, r)).format}`,
      after: async () => {
        for (const [s, n] of ranges) base.bytes.copy(base.work, s, s, s + n);
        if (file === base.file) await patch(file, base.bytes, ranges);
      },
    };
  });
  tc.diagnostic(`${CASES} cases in ${ms.toFixed(0)} ms: ${JSON.stringify(Object.fromEntries(outcomes))}`);
  assert.deepEqual(failures, [], `seed ${SEED}: reader threw non-VmdnError exceptions`);
  const opened = [...outcomes].filter(([k]) => k.startsWith('ok-')).reduce((s, [, v]) => s + v, 0);
  assert.ok(opened > CASES / 10, `too few mutated images opened successfully (${opened})`);
  assert.ok(CASES - opened > CASES / 10, `too few mutated images refused (${CASES - opened}): the mutations test nothing`);
});
