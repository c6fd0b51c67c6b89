/**
 * Seeded mutation fuzzing of the qcow2 reader. Valid qemu-img images get a
 * few bytes of their header, extension area, L1 or L2 tables (or anything
 * else) overwritten; opening, walking extents and reading must then either
 * succeed or throw a VmdnError, quickly. Any other exception is a reader bug.
 *   VMDN_FUZZ_SEED=<n>   reproduce a run (the seed is printed)
 *   VMDN_FUZZ_CASES=<n>  number of cases (default 1200)
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeRaw, prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { exerciseDisk, fuzzLoop } from '../helpers/fuzz.js';
import { MiB, qemuImg, qemuIo, headerInfo, type HeaderInfo } from './qcow2-fixtures.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';

const SEED = seedFrom('VMDN_FUZZ_SEED');
const CASES = Number(process.env.VMDN_FUZZ_CASES ?? 1200);
const CASE_TIMEOUT_MS = 2000;

const t = tmpDir('vmdn-qcow2-fuzz-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
const bases: { name: string; bytes: Buffer; h: HeaderInfo }[] = [];

before(async () => {
  const src = at('src.raw');
  writeRaw(src, 4 * MiB, [
    { offset: 0, data: Buffer.from('fuzzing qcow2 metadata\n'.repeat(6000)) },
    { offset: MiB + 4096, data: prng(5, 200 * 1024) },
    { offset: 3 * MiB, data: Buffer.from('tail text '.repeat(3000)) },
  ]);
  const conv = async (name: string, ...o: string[]): Promise<void> => {
    await qemuImg('convert', '-O', 'qcow2', ...o, src, at(name));
  };
  await conv('v2.qcow2', '-o', 'compat=0.10,cluster_size=4k');
  await conv('v3.qcow2');
  await conv('zlib.qcow2', '-c');
  await conv('zstd.qcow2', '-c', '-o', 'compression_type=zstd,cluster_size=16k');
  await conv('extl2.qcow2', '-o', 'extended_l2=on,cluster_size=16k');
  await qemuIo(at('extl2.qcow2'), 'write -P 0x55 2050k 2k', 'write -z 4k 4k');
  // Mutated copies live next to v3.qcow2, so the relative backing name still resolves.
  await qemuImg('create', '-f', 'qcow2', '-b', 'v3.qcow2', '-F', 'qcow2', at('top.qcow2'));
  await qemuIo(at('top.qcow2'), 'write -P 0x66 100k 8k', 'write -z 1M 64k');
  for (const name of ['v2.qcow2', 'v3.qcow2', 'zlib.qcow2', 'zstd.qcow2', 'extl2.qcow2', 'top.qcow2']) {
    const bytes = await fs.readFile(at(name));
    bases.push({ name, bytes, h: headerInfo(bytes) });
  }
});

after(() => t.cleanup());

/** Overwrite a few bytes of `b` in place (or cut it); returns a description for failure reports. */
function mutate(b: Buffer, h: HeaderInfo, r: () => number): { buf: Buffer; what: string } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const int = (n: number): number => Math.floor(r() * n);
  if (r() < 0.04) {
    const len = int(b.length);
    return { buf: b.subarray(0, len), what: `truncate to ${len}` };
  }
  // an earlier truncation may have left no word to overwrite (npm run fuzz, seed 2492106773: RangeError in the harness)
  if (b.length < 8) return { buf: b, what: 'too short to mutate' };
  const region = pick(['header', 'header', 'ext', 'l1', 'l2', 'l2', 'any'] as const);
  const [lo, hi] = {
    header: [0, 112], ext: [h.headerLength, h.headerLength + 256], l1: [h.l1Offset, h.l1Offset + Math.max(8, h.l1Size * 8)],
    l2: [h.firstL2, h.firstL2 + Math.min(h.clusterSize, 2048)], any: [0, b.length],
  }[region];
  const off = Math.min(b.length - 8, lo + int(hi - lo));
  const fileSize = BigInt(b.length), cs = BigInt(h.clusterSize);
  const op = pick(['bit', 'byte', 'u32', 'u64', 'u64'] as const);
  switch (op) {
    case 'bit': b[off] ^= 1 << int(8); break;
    case 'byte': b[off] = int(256); break;
    case 'u32': b.writeUInt32BE(pick([0, 1, 8, 9, 22, 0x7fffffff, 0xffffffff, b.length, h.clusterSize, int(2 ** 32)]), off & ~3); break;
    case 'u64': {
      const o = off & ~7;
      const old = b.readBigUInt64BE(o);
      const v = pick([0n, 1n << 63n, 1n << 62n, fileSize, fileSize + cs, cs, old + cs, old - 512n, old ^ (1n << BigInt(int(64))),
        (BigInt(int(2 ** 32)) << 32n) | BigInt(int(2 ** 32)), (1n << 64n) - 1n]);
      b.writeBigUInt64BE(BigInt.asUintN(64, v), o);
      break;
    }
  }
  return { buf: b, what: `${op} in ${region} at ${off}` };
}

it(`qcow2 reader survives ${CASES} mutated images (VMDN_FUZZ_SEED=${SEED})`, async (tc) => {
  tc.diagnostic(`VMDN_FUZZ_SEED=${SEED}`);
  const { outcomes, failures, ms, slowest } = await fuzzLoop(CASES, CASE_TIMEOUT_MS, async (i) => {
    // One PRNG per case, so a failing case is reproducible from (seed, index) alone.
    const r = mulberry32((SEED ^ Math.imul(i + 1, 0x9e3779b9)) >>> 0);
    const base = bases[Math.floor(r() * bases.length)];
    let buf: Buffer = Buffer.from(base.bytes);
    const what: string[] = [];
    for (let k = 1 + Math.floor(r() * 3); k > 0; k--) {
      const m = mutate(buf, base.h, r);
      buf = m.buf;
      what.push(m.what);
    }
    const file = at(`fz-${i % 2}.qcow2`);
    await fs.writeFile(file, buf);
    return { what: `${base.name}: ${what.join('; ')}`, run: async () => (await exerciseDisk(file, r), 'ok') };
  });
  tc.diagnostic(`${CASES} cases in ${ms.toFixed(0)} ms (slowest: case ${slowest.i}, ${slowest.ms.toFixed(0)} ms): ${JSON.stringify(Object.fromEntries(outcomes))}`);
  assert.deepEqual(failures, [], `seed ${SEED}: reader threw non-VmdnError exceptions`);
  // Mutations must not be so destructive that nothing opens: that would test nothing.
  assert.ok((outcomes.get('ok') ?? 0) > CASES / 10, 'too few mutated images opened successfully');
});
