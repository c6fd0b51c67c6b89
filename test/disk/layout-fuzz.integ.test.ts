/**
 * Seeded mutation fuzzing of the partition-table and FAT readers. Valid images
 * (sfdisk GPT with a FAT partition, sfdisk MBR with logical partitions,
 * mkfs.vfat FAT12/16/32 filled by mtools) get bytes of their headers, tables,
 * FATs or directory entries overwritten; reading the table, probing, walking
 * and reading every file must then succeed or throw a VmdnError, quickly.
 *   VMDN_FUZZ_SEED=<n>  reproduce a run (the seed is printed)
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { readPartitionTable, partitionDisk } from '../../src/disk/partitions.js';
import { GptHeaderStruct } from '../../src/disk/gpt.js';
import { probeFilesystem } from '../../src/fs/probe.js';
import { openFat } from '../../src/fs/fat/fat.js';
import { parseGeometry } from '../../src/fs/fat/layout.js';
import { crc32 } from '../../src/util/crc32.js';
import { VmdnError } from '../../src/errors.js';
import { MemDisk } from '../helpers/memdisk.js';
import { walkTree } from '../helpers/fstree.js';
import { sfdiskWrite } from '../helpers/sfdisk.js';
import { mtool } from '../helpers/mtools.js';
import { prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { fuzzCases } from '../helpers/fuzz.js';

const SEED = seedFrom('VMDN_FUZZ_SEED');
const CASE_TIMEOUT_MS = 2000;
const MiB = 1 << 20;

const rnd = mulberry32(SEED);
const int = (n: number): number => Math.floor(rnd() * n);

const t = tmpDir('vmdn-layout-fuzz-');
after(() => t.cleanup());
const at = (n: string): string => path.join(t.dir, n);

function fatImage(file: string, fat: 12 | 16 | 32, kib: number): Buffer {
  execFileSync('mkfs.vfat', ['-F', String(fat), '-s', '1', '-C', file, String(kib)], { stdio: 'ignore' });
  const src = at(`fsrc${fat}`);
  fs.mkdirSync(path.join(src, 'Sub Dir/nested'), { recursive: true });
  fs.writeFileSync(path.join(src, 'A long name.txt'), 'long\n');
  fs.writeFileSync(path.join(src, 'Sub Dir/nested/ünïcödé.bin'), prng(3, 9000));
  fs.writeFileSync(path.join(src, 'Sub Dir/short.txt'), '');
  fs.writeFileSync(path.join(src, 'BIG.DAT'), prng(4, 40_000));
  mtool('mcopy', ['-s', '-i', file, ...fs.readdirSync(src).map((n) => path.join(src, n)), '::']);
  return fs.readFileSync(file);
}

interface Base {
  name: string;
  bytes: Buffer;
  /** Byte ranges worth mutating. */
  targets: Array<[number, number]>;
  fixGpt?: boolean;
  run: (d: MemDisk) => Promise<void>;
}
const bases: Base[] = [];

async function exerciseFs(d: MemDisk): Promise<void> {
  const r = await probeFilesystem(d);
  if (!r.fs) return;
  await walkTree(r.fs, { hash: true, maxNodes: 2000, maxDepth: 16 });
  await r.fs.usedRanges();
}

async function exerciseTable(d: MemDisk): Promise<void> {
  const table = await readPartitionTable(d);
  for (const p of table.partitions) {
    try {
      await exerciseFs(new MemDisk(d.bytes.subarray(p.offset, p.offset + p.length)) as MemDisk);
    } catch (err) {
      if (!(err instanceof VmdnError)) throw err;
    }
    try { partitionDisk(d, p); } catch (err) { if (!(err instanceof VmdnError)) throw err; }
  }
}

/** Recompute a GPT header's entry-array and header CRCs, so semantic checks (not only CRCs) get exercised. */
function fixGptCrcs(b: Buffer, lba: number): void {
  const off = lba * 512;
  const h = GptHeaderStruct.parse(b, off);
  const len = h.numEntries * h.entrySize, eoff = Number(h.entriesLba) * 512;
  if (len <= 4 * MiB && eoff + len <= b.length) b.writeUInt32LE(crc32(b.subarray(eoff, eoff + len)), off + 88);
  b.writeUInt32LE(0, off + 16);
  b.writeUInt32LE(crc32(b.subarray(off, off + 92)), off + 16);
}

before(async () => {
  const fat12 = fatImage(at('p.fat'), 12, 1024);
  sfdiskWrite(at('gpt.img'), 8 * MiB, 'label: gpt\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name="bios"\nstart=4096, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="efi"\nstart=6144, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n');
  const gpt = fs.readFileSync(at('gpt.img'));
  fat12.copy(gpt, 4096 * 512);
  const last = gpt.length / 512 - 1;
  bases.push({ name: 'gpt', bytes: gpt, fixGpt: true, run: exerciseTable,
    targets: [[0, 512], [512, 604], [1024, 1024 + 512], [(last - 32) * 512, (last - 31) * 512], [last * 512, last * 512 + 92], [4096 * 512, 4096 * 512 + 512]] });
  sfdiskWrite(at('mbr.img'), 8 * MiB, 'label: dos\nstart=2048, size=2048, type=ef, bootable\nstart=4096, size=12288, type=5\nstart=6144, size=2048, type=83\nstart=10240, size=2048, type=82\nstart=14336, size=2000, type=83\n');
  const mbr = fs.readFileSync(at('mbr.img'));
  fat12.copy(mbr, 2048 * 512);
  const ebrs = [4096, 8192, 12288].map((s) => [s * 512 + 446, s * 512 + 512] as [number, number]);
  bases.push({ name: 'mbr', bytes: mbr, run: exerciseTable, targets: [[440, 512], [446, 478], ...ebrs] });
  for (const [fat, kib] of [[12, 1024], [16, 4096], [32, 34 * 1024]] as const) {
    const b = fatImage(at(`f${fat}.img`), fat, kib);
    const g = parseGeometry(b, b.length);
    const root = g.fatType === 32 ? g.dataOffset + (g.rootCluster - 2) * g.clusterSize : g.rootDirOffset;
    bases.push({ name: `fat${fat}`, bytes: b, run: async (d) => { await openFat(d); await exerciseFs(d); },
      targets: [[0, 90], [g.fatOffset, g.fatOffset + 512], [root, root + 512], [g.dataOffset, g.dataOffset + 4096]] });
  }
});

/** Apply 1-4 mutations inside the base's targets; returns an undo function (the buffers are large, so no copies). */
function mutate(b: Base): { undo: () => void; what: string } {
  const saved: Array<[number, Buffer]> = [];
  const what: string[] = [];
  const n = 1 + int(4);
  for (let i = 0; i < n; i++) {
    const [s, e] = b.targets[int(b.targets.length)];
    const off = s + int(Math.max(1, e - s - 4));
    saved.push([off, Buffer.from(b.bytes.subarray(off, off + 4))]);
    const kind = int(4);
    if (kind === 0) b.bytes[off] = int(256);
    else if (kind === 1) b.bytes[off] ^= 1 << int(8);
    else if (kind === 2) b.bytes.writeUInt16LE([0, 0xffff, 1, int(0x10000)][int(4)], off);
    else b.bytes.writeUInt32LE([0, 0xffffffff, 0x0ffffff7, int(2 ** 32)][int(4)], off);
    what.push(`${kind}@${off}`);
  }
  if (b.fixGpt && rnd() < 0.5) {
    const lbas = [1, b.bytes.length / 512 - 1];
    for (const l of lbas) { saved.push([l * 512, Buffer.from(b.bytes.subarray(l * 512, l * 512 + 92))]); fixGptCrcs(b.bytes, l); }
    what.push('crc-fixed');
  }
  return { what: what.join(' '), undo: () => { for (const [o, d] of saved.reverse()) d.copy(b.bytes, o); } };
}

const outcomes: Record<string, number> = {};

async function runCase(b: Base, what: string): Promise<void> {
  const t0 = Date.now();
  try {
    await b.run(new MemDisk(b.bytes));
    outcomes[`${b.name} ok`] = (outcomes[`${b.name} ok`] ?? 0) + 1;
  } catch (err) {
    if (err instanceof VmdnError) outcomes[`${b.name} ${err.code}`] = (outcomes[`${b.name} ${err.code}`] ?? 0) + 1;
    if (!(err instanceof VmdnError)) throw new Error(`seed ${SEED}, ${b.name} [${what}]: non-VmdnError: ${(err as Error)?.stack ?? err}`);
  }
  assert.ok(Date.now() - t0 < CASE_TIMEOUT_MS, `seed ${SEED}, ${b.name} [${what}] took ${Date.now() - t0} ms`);
}

it('the unmutated bases read cleanly', async () => {
  for (const b of bases) await b.run(new MemDisk(b.bytes));
});

it('GPT entry counts too large (and other header fields) with valid CRCs', async () => {
  const g = bases.find((b) => b.name === 'gpt')!;
  const last = g.bytes.length / 512 - 1;
  for (const fields of [{ numEntries: 1025 }, { numEntries: 0x7fffffff }, { numEntries: 0xffffffff }, { entrySize: 0 }, { entrySize: 129 },
    { entrySize: 0x80000000 }, { entriesLba: 2n ** 63n }, { entriesLba: BigInt(last) }, { firstUsableLba: 2n ** 64n - 1n }, { headerSize: 0xffffffff }]) {
    const saved = Buffer.from(g.bytes);
    for (const l of [1, last]) { GptHeaderStruct.write(fields as never, g.bytes, l * 512); fixGptCrcs(g.bytes, l); }
    await assert.rejects(readPartitionTable(new MemDisk(g.bytes)), (e: unknown) => e instanceof VmdnError && e.code === 'E_FORMAT', JSON.stringify(fields, (_, v) => (typeof v === 'bigint' ? String(v) : v)));
    saved.copy(g.bytes);
  }
});

it('EBR chain loops and FAT cluster loops are E_FORMAT or warnings, never hangs', async () => {
  const m = bases.find((b) => b.name === 'mbr')!;
  const saved = Buffer.from(m.bytes);
  assert.deepEqual((await readPartitionTable(new MemDisk(m.bytes))).partitions.map((p) => p.index), [1, 2, 5, 6, 7]);
  m.bytes[12288 * 512 + 446 + 16 + 4] = 0x05; // the last EBR gets a link entry, back to the second EBR
  m.bytes.writeUInt32LE(8192 - 4096, 12288 * 512 + 446 + 16 + 8);
  m.bytes.writeUInt32LE(4096, 12288 * 512 + 446 + 16 + 12);
  const table = await readPartitionTable(new MemDisk(m.bytes));
  assert.ok(table.warnings.some((w) => /loops/.test(w)), table.warnings.join('; '));
  saved.copy(m.bytes);
  const f = bases.find((b) => b.name === 'fat16')!;
  const g = parseGeometry(f.bytes, f.bytes.length);
  const saveFat = Buffer.from(f.bytes.subarray(g.fatOffset, g.fatOffset + g.fatBytes));
  for (let c = 2; c < 200; c++) f.bytes.writeUInt16LE(c === 199 ? 3 : c + 1, g.fatOffset + c * 2); // one long loop
  const fsys = await openFat(new MemDisk(f.bytes));
  assert.throws(() => fsys.chain(2), (e: unknown) => e instanceof VmdnError && e.code === 'E_FORMAT' && /loops/.test(e.message));
  saveFat.copy(f.bytes, g.fatOffset);
});

it('seeded mutations: only VmdnError, each case bounded in time', async () => {
  console.log(`layout fuzz seed ${SEED} (VMDN_FUZZ_SEED=${SEED} to reproduce)`);
    // npm run fuzz: VMDN_FUZZ_CASES each for GPT and MBR, and for FAT over its three variants
  const n = fuzzCases(0);
  const perBase: Record<string, number> = n ? { gpt: n, mbr: n, fat12: Math.ceil(n / 3), fat16: Math.ceil(n / 3), fat32: Math.ceil(n / 3) } : { gpt: 400, mbr: 300, fat12: 150, fat16: 150, fat32: 150 };
  let total = 0;
  for (const b of bases) {
    for (let i = 0; i < perBase[b.name]; i++) {
      const { undo, what } = mutate(b);
      try {
        await runCase(b, what);
      } finally {
        undo();
      }
      total++;
    }
  }
  console.log(`layout fuzz outcomes: ${JSON.stringify(outcomes)}`);
  assert.equal(total, Object.values(perBase).reduce((a, b) => a + b, 0), `${total} cases`);
});
