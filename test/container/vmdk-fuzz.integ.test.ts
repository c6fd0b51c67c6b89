/**
 * Seeded mutation fuzzing of the VMDK reader, one test per parser: the sparse
 * header (and grain directory and tables), the text descriptor, and the
 * streamOptimized markers and footer. Valid images (qemu-img's and vmdn's
 * own) get bytes overwritten or are cut; opening, walking extents and
 * reading must then succeed or throw a VmdnError, quickly. Any other
 * exception, or a hang, is a reader bug.
 *   VMDN_FUZZ_SEED=<n>   reproduce a run (the seed is printed)
 *   VMDN_FUZZ_CASES=<n>  cases per parser (default 1000)
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { openDisk } from '../../src/container/open.js';
import { writeRaw, prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { fuzzLoop } from '../helpers/fuzz.js';
import { vmdnOk } from '../helpers/cli.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { MiB, qemuImg } from './qcow2-fixtures.js';
import { makeMultiExtent } from './vmdk-fixtures.js';

const SEED = seedFrom('VMDN_FUZZ_SEED');
const CASES = Number(process.env.VMDN_FUZZ_CASES ?? 1000);
const CASE_TIMEOUT_MS = 2000;

const t = tmpDir('vmdn-vmdk-fuzz-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
const base = { sparse: Buffer.alloc(0), qstream: Buffer.alloc(0), stream: Buffer.alloc(0), desc: '' };

before(async () => {
  const src = at('src.raw');
  // Small (1 MiB + 3 sectors): every case can read the whole disk.
  writeRaw(src, MiB + 1536, [
    { offset: 0, data: Buffer.from('fuzzing vmdk grains\n'.repeat(4000)) },
    { offset: 300 * 1024, data: prng(3, 70 * 1024) },
    { offset: MiB, data: prng(4, 1536) },
  ]);
  await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicSparse', src, at('sparse.vmdk'));
  await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src, at('qstream.vmdk'));
  vmdnOk(at('store'), ['import', src, '-n', 'src']);
  vmdnOk(at('store'), ['export', 'src', at('stream.vmdk'), '--format', 'vmdk']); // grain directory in the footer
  base.sparse = await fs.readFile(at('sparse.vmdk'));
  base.qstream = await fs.readFile(at('qstream.vmdk'));
  base.stream = await fs.readFile(at('stream.vmdk'));
  // Descriptor mutants are written beside the extents they name.
  const big = at('big.raw');
  writeRaw(big, 6 * MiB, [{ offset: 0, data: prng(5, 100 * 1024) }, { offset: 5 * MiB, data: prng(6, 8192) }]);
  base.desc = await fs.readFile((await makeMultiExtent(big, at('multi'), true)).desc, 'latin1');
});

after(() => t.cleanup());

type Rng = () => number;
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: Rng, n: number): number => Math.floor(r() * n);

/** Overwrite a field-sized value in [lo, hi) of `b` with something interesting. */
function poke(b: Buffer, lo: number, hi: number, r: Rng): string {
  // an earlier cut may have left no word to overwrite (a RangeError in the harness, not the reader)
  if (b.length < 8) return 'too short to poke';
  const off = Math.max(0, Math.min(b.length - 8, lo + int(r, Math.max(1, hi - lo))));
  const op = pick(r, ['bit', 'byte', 'u32', 'u32', 'u64'] as const);
  const sectors = Math.floor(b.length / 512);
  switch (op) {
    case 'bit': b[off] ^= 1 << int(r, 8); break;
    case 'byte': b[off] = int(r, 256); break;
    case 'u32': b.writeUInt32LE(pick(r, [0, 1, 2, 21, 127, 128, 129, sectors - 1, sectors, sectors + 1, 0x7fffffff, 0xffffffff, int(r, 2 ** 32)]), off); break;
    case 'u64': b.writeBigUInt64LE(pick(r, [0n, 1n, 128n, BigInt(sectors), 1n << 40n, (1n << 64n) - 1n, BigInt(int(r, 2 ** 32))]), off); break;
  }
  return `${op}@${off}`;
}

/** Mutate a binary image: mostly in `regions`, sometimes anywhere, sometimes cut. */
function mutateBinary(src: Buffer, regions: [number, number][], r: Rng): { buf: Buffer; what: string } {
  let b = Buffer.from(src);
  const what: string[] = [];
  for (let k = 1 + int(r, 3); k > 0; k--) {
    if (r() < 0.05) {
      const len = pick(r, [int(r, b.length), b.length - 512, b.length - 1, b.length - 1024 - int(r, 2048)]);
      b = b.subarray(0, Math.max(0, len));
      what.push(`cut ${len}`);
      continue;
    }
    const [lo, hi] = r() < 0.85 ? pick(r, regions) : [0, b.length];
    what.push(poke(b, lo, hi, r));
  }
  return { buf: b, what: what.join('; ') };
}

/** Where a sparse image's tables are: header, grain directory, first grain table, first grain. */
function sparseRegions(b: Buffer): [number, number][] {
  const gd = Number(b.readBigUInt64LE(56)) * 512;
  const gt = b.readUInt32LE(gd) * 512;
  return [[0, 80], [0, 80], [gd, gd + 64], [gt, gt + 2048], [b.readUInt32LE(gt) * 512, b.readUInt32LE(gt) * 512 + 64]];
}

/** streamOptimized: grain markers and their data, table and directory markers, the footer. */
function streamRegions(b: Buffer): [number, number][] {
  const n = b.length;
  const first = 128 * 512;
  return [[first, first + 16], [first, first + 64], [n - 1536, n - 1536 + 16], [n - 1024, n - 1024 + 80], [n - 512, n - 496], [n - 4096, n - 1536], [0, 80]];
}

const TOKENS = ['..', '/', '\\', '"', '=', ' ', '\n', '\0', 'RW', 'FLAT', 'SPARSE', 'ZERO', 'VMFS', '0', '99999999999999999999', '-1', '4096', '#', 'createType="vmfsSparse"', 'parentCID=1234', '\r\n'];

/** Mutate the descriptor text: replace or insert tokens, drop or repeat lines. */
function mutateDescriptor(text: string, r: Rng): { buf: Buffer; what: string } {
  let s = text;
  const what: string[] = [];
  for (let k = 1 + int(r, 3); k > 0; k--) {
    const at = int(r, s.length + 1);
    const op = pick(r, ['insert', 'replace', 'replace', 'dropline', 'dupline', 'digit'] as const);
    if (op === 'insert') s = s.slice(0, at) + pick(r, TOKENS) + s.slice(at);
    else if (op === 'replace') s = s.slice(0, at) + pick(r, TOKENS) + s.slice(at + 1 + int(r, 6));
    else if (op === 'digit') s = s.slice(0, at) + String(int(r, 10)) + s.slice(at + 1);
    else {
      const lines = s.split('\n');
      const i = int(r, lines.length);
      if (op === 'dropline') lines.splice(i, 1);
      else lines.splice(i, 0, lines[i]);
      s = lines.join('\n');
    }
    what.push(`${op}@${at}`);
  }
  return { buf: Buffer.from(s, 'latin1'), what: what.join('; ') };
}

async function exercise(file: string): Promise<string> {
  const disk = await openDisk(file);
  try {
    let n = 0;
    for await (const _ of disk.extents()) n++;
    // Descriptors may describe big (mostly zero) disks: read the first and last MiB only.
    const head = Math.min(MiB + 1536, disk.virtualSize);
    await disk.read(0, head);
    if (disk.virtualSize > head) await disk.read(disk.virtualSize - Math.min(MiB, disk.virtualSize - head), Math.min(MiB, disk.virtualSize - head));
    return `ok (${n} extents)`;
  } finally {
    await disk.close();
  }
}

async function fuzz(tc: { diagnostic(s: string): void }, name: string, dir: string, make: (r: Rng) => { buf: Buffer; what: string }): Promise<void> {
  tc.diagnostic(`VMDN_FUZZ_SEED=${SEED}`);
  const { outcomes, failures, ms } = await fuzzLoop(CASES, CASE_TIMEOUT_MS, async (i) => {
    // One PRNG per case and parser, so a failing case is reproducible from (seed, parser, index).
    const r = mulberry32((SEED ^ Math.imul(i + 1, 0x9e3779b9) ^ name.length * 0x85ebca6b) >>> 0);
    const m = make(r);
    const file = path.join(dir, `fz-${name}.vmdk`);
    await fs.writeFile(file, m.buf);
    return { what: m.what, run: async () => ((await exercise(file)).startsWith('ok') ? 'ok' : 'other') };
  });
  tc.diagnostic(`${name}: ${CASES} cases in ${ms.toFixed(0)} ms: ${JSON.stringify(Object.fromEntries(outcomes))}`);
  assert.deepEqual(failures, [], `seed ${SEED}: reader threw non-VmdnError exceptions or hung`);
  // Mutations must not be so destructive that nothing opens: that would test nothing.
  assert.ok((outcomes.get('ok') ?? 0) > CASES / 20, `too few mutated ${name} images opened successfully`);
  assert.ok(outcomes.size > 1, `no mutated ${name} image was refused`);
}

it(`sparse header, grain directory and tables survive ${CASES} mutations (VMDN_FUZZ_SEED=${SEED})`, (tc) =>
  fuzz(tc, 'header', t.dir, (r) => mutateBinary(base.sparse, sparseRegions(base.sparse), r)));

it(`descriptor parser survives ${CASES} mutations (VMDN_FUZZ_SEED=${SEED})`, (tc) =>
  fuzz(tc, 'descriptor', at('multi'), (r) => mutateDescriptor(base.desc, r)));

it(`streamOptimized markers and footer survive ${CASES} mutations (VMDN_FUZZ_SEED=${SEED})`, (tc) =>
  fuzz(tc, 'stream', t.dir, (r) => {
    const b = r() < 0.7 ? base.stream : base.qstream;
    return mutateBinary(b, b === base.stream ? streamRegions(b) : sparseRegions(b), r);
  }));
