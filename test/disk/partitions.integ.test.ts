/**
 * Partition tables written by the real sfdisk, read back by readPartitionTable
 * and compared field by field with `sfdisk --json` of the same image; then
 * damaged copies (primary GPT, entry counts) and the shared corpus images.
 */
import { it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { openDisk } from '../../src/container/open.js';
import { readPartitionTable, partitionDisk, type PartitionTable } from '../../src/disk/partitions.js';
import { GptHeaderStruct } from '../../src/disk/gpt.js';
import { crc32, crc32Fallback } from '../../src/util/crc32.js';
import { VmdnError } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { corpusDir, CORPUS_IMAGES } from '../helpers/corpus.js';
import { sfdiskWrite, sfdiskJson, nodeIndex, type SfdiskTable } from '../helpers/sfdisk.js';

const MiB = 1 << 20;
const t = tmpDir('vmdn-part-');
after(() => t.cleanup());
const at = (n: string): string => path.join(t.dir, n);

async function table(file: string): Promise<PartitionTable> {
  const d = await openDisk(file);
  try {
    return await readPartitionTable(d);
  } finally {
    await d.close();
  }
}

function assertMatchesSfdisk(ours: PartitionTable, sf: SfdiskTable): void {
  assert.equal(ours.scheme, sf.label === 'dos' ? 'mbr' : 'gpt');
  assert.equal(ours.diskId, sf.id);
  assert.equal(ours.sectorSize, sf.sectorsize);
  if (sf.label === 'gpt') {
    assert.equal(ours.firstUsableLba, sf.firstlba);
    assert.equal(ours.lastUsableLba, sf.lastlba);
  }
  const want = (sf.partitions ?? []).map((p) => ({
    index: nodeIndex(p.node), start: p.start, size: p.size, type: p.type,
    uuid: p.uuid, name: p.name ?? '', attrs: p.attrs ?? '', bootable: p.bootable ?? false,
  }));
  const got = ours.partitions.map((p) => ({
    index: p.index, start: p.start, size: p.size, type: p.type, uuid: p.uuid, name: p.name,
    attrs: sf.label === 'gpt' ? p.flags.join(' ') : '', bootable: sf.label === 'dos' ? p.bootable : false,
  }));
  assert.deepEqual(got, want);
}

const GPT_SCRIPT = `label: gpt
label-id: 5C1DE7A6-1111-4000-8000-0123456789AB
first-lba: 34
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name="bios boot", attrs="LegacyBIOSBootable"
start=4096, size=20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI system", uuid=0B2C4A51-90E8-4C1B-A2F4-5A3D4E6F7081
start=24576, size=40960, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root ü €", attrs="RequiredPartition GUID:60"
start=65536, size=8192, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F
`;

it('GPT made by sfdisk matches sfdisk --json', async () => {
  sfdiskWrite(at('gpt.img'), 64 * MiB, GPT_SCRIPT);
  const ours = await table(at('gpt.img'));
  assertMatchesSfdisk(ours, sfdiskJson(at('gpt.img')));
  assert.equal(ours.gptSource, 'primary');
  assert.deepEqual(ours.warnings, []);
  assert.equal(ours.partitions.find((p) => p.index === 1)!.typeName, 'BIOS boot');
});

it('MBR with extended and logical partitions matches sfdisk --json', async () => {
  sfdiskWrite(at('mbr.img'), 64 * MiB, `label: dos
label-id: 0x12345678
start=2048, size=8192, type=83, bootable
start=10240, size=8192, type=c
start=18432, size=100000, type=5
start=120000, size=2000, type=ef
start=20480, size=4096, type=83
start=26624, size=4096, type=82
start=32768, size=8192, type=8e
`);
  const ours = await table(at('mbr.img'));
  assertMatchesSfdisk(ours, sfdiskJson(at('mbr.img')));
  assert.deepEqual(ours.partitions.filter((p) => p.flags.includes('logical')).map((p) => p.index), [5, 6, 7]);
  assert.deepEqual(ours.warnings, []);
});

it('CRC32 fallback agrees with the native one', () => {
  const b = Buffer.from('The quick brown fox jumps over the lazy dog');
  assert.equal(crc32Fallback(b), 0x414fa339);
  assert.equal(crc32(b), 0x414fa339);
});

function damaged(src: string, name: string, edit: (b: Buffer) => void): string {
  const b = fs.readFileSync(src);
  edit(b);
  fs.writeFileSync(at(name), b);
  return at(name);
}

/** Rewrite a header field and fix its CRC, so only the semantic checks can object. */
function setHeaderField(b: Buffer, lba: number, values: Record<string, number>): void {
  const off = lba * 512;
  GptHeaderStruct.write(values as never, b, off);
  b.writeUInt32LE(0, off + 16);
  b.writeUInt32LE(crc32(b.subarray(off, off + 92)), off + 16);
}

it('a corrupted primary GPT falls back to the backup with a warning', async () => {
  const good = await table(at('gpt.img'));
  const lastLba = 64 * MiB / 512 - 1;
  for (const [name, edit] of [
    ['hdr-crc.img', (b: Buffer) => { b[512 + 16] ^= 0xff; }],
    ['hdr-sig.img', (b: Buffer) => { b.write('XXX', 512); }],
    ['entries.img', (b: Buffer) => { b[1024 + 130] ^= 0x55; }],
    ['count.img', (b: Buffer) => setHeaderField(b, 1, { numEntries: 100_000 })],
    ['entsize.img', (b: Buffer) => setHeaderField(b, 1, { entrySize: 200 })],
  ] as const) {
    const ours = await table(damaged(at('gpt.img'), name, edit));
    assert.equal(ours.gptSource, 'backup', name);
    assert.ok(ours.warnings.some((w) => /primary GPT is invalid/.test(w)), `${name}: ${ours.warnings}`);
    assert.deepEqual(ours.partitions, good.partitions, name);
  }
  // A bad backup alone is only a warning.
  const bk = await table(damaged(at('gpt.img'), 'bk.img', (b) => { b[lastLba * 512 + 20] ^= 1; }));
  assert.equal(bk.gptSource, 'primary');
  assert.ok(bk.warnings.some((w) => /backup GPT is invalid/.test(w)));
});

it('GPT entry counts too large (both copies) are refused with E_FORMAT', async () => {
  const lastLba = 64 * MiB / 512 - 1;
  for (const fields of <Array<Record<string, number>>>[{ numEntries: 1025 }, { numEntries: 0xffffffff }, { entrySize: 0 }, { entrySize: 1 << 20 }]) {
    const f = damaged(at('gpt.img'), 'both.img', (b) => { setHeaderField(b, 1, fields); setHeaderField(b, lastLba, fields); });
    await assert.rejects(table(f), (e: unknown) => e instanceof VmdnError && e.code === 'E_FORMAT' && /GPT/.test(e.message), JSON.stringify(fields));
  }
});

it('boot regions: MBR boot code, the post-table gap and the BIOS boot partition', async () => {
  const clean = await table(at('gpt.img'));
  assert.deepEqual(clean.bootRegions.map((r) => [r.kind, r.offset, r.size, r.used]), [
    ['mbr-boot-code', 0, 440, false],
    ['post-table-gap', 34 * 512, (2048 - 34) * 512, false],
    ['bios-boot-partition', 2048 * 512, 2048 * 512, false],
  ]);
  const f = damaged(at('gpt.img'), 'boot.img', (b) => {
    b.write('boot code', 0);
    b.write('core.img', 100 * 512);
    b.write('stage 1.5', 2048 * 512 + 7);
  });
  assert.deepEqual((await table(f)).bootRegions.map((r) => r.used), [true, true, true]);
  const mbr = await table(at('mbr.img'));
  assert.deepEqual(mbr.bootRegions.map((r) => [r.kind, r.offset, r.size]), [['mbr-boot-code', 0, 440], ['post-table-gap', 512, 2047 * 512]]);
});

it('no table, and partitions past the disk end', async () => {
  fs.writeFileSync(at('blank.img'), Buffer.alloc(MiB));
  assert.equal((await table(at('blank.img'))).scheme, 'none');
  const f = damaged(at('mbr.img'), 'short.img', () => {});
  fs.truncateSync(f, 60000 * 512);
  const d = await openDisk(f);
  const ours = await readPartitionTable(d);
  assert.ok(ours.warnings.some((w) => /past the disk end|outside/.test(w)), ours.warnings.join('; '));
  assert.throws(() => partitionDisk(d, ours.partitions.find((p) => p.index === 4)!), (e: unknown) => e instanceof VmdnError && e.code === 'E_FORMAT');
  await d.close();
});

it('corpus images: readPartitionTable equals sfdisk --json (raw and qcow2)', async (ctx) => {
  const c = corpusDir();
  if (!c.dir) { console.log(`skipped: ${c.reason}`); ctx.skip(c.reason); return; }
  for (const name of CORPUS_IMAGES) {
    const raw = path.join(c.dir, `${name}.raw`);
    if (!fs.existsSync(raw)) continue;
    const sf = sfdiskJson(raw);
    assertMatchesSfdisk(await table(raw), sf);
    const q = await table(path.join(c.dir, `${name}.qcow2`));
    assertMatchesSfdisk(q, sf);
    assert.deepEqual(q.warnings, []);
    assert.deepEqual(q.bootRegions.map((r) => r.kind), ['mbr-boot-code', 'post-table-gap', 'bios-boot-partition']);
    assert.equal(q.bootRegions[2].used, true);
  }
});
