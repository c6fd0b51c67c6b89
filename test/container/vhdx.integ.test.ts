/**
 * VHDX reader against qemu: fixed and dynamic images made by qemu-img and
 * written by qemu-io read exactly as `qemu-img convert -O raw` does; a
 * differencing disk (patched from a qemu image: qemu makes none) reads its
 * blocks over its parent's, by block state and sector bitmap; a dirty log is
 * replayed in memory as qemu replays it (`qemu-img check -r all` on a copy),
 * a broken one refused; damaged and hostile files fail with a code.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { openDisk, probeFormat } from '../../src/container/open.js';
import { VhdxDisk } from '../../src/container/vhdx/reader.js';
import { formatFromPath, openWriter } from '../../src/container/writers.js';
import { VmdnError } from '../../src/errors.js';
import { crc32c as libCrc } from '../../src/container/vhdx/crc32c.js';
import type { ErrorCode } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';
import { assertSameContent, assertExtents, expectCode } from './qcow2-fixtures.js';
import { rawOf } from './vhd-vdi-fixtures.js';
import {
  MiB, SIZE, qemuImg, writeRandom, makeVhdxImages, makeDifferencing, crc32c, curHeader, fixHeaders, fixCrc, fixRegionTables, region,
  metaData, batAt, blockOffset, logEntry, dirty, HEADERS, REGION_TABLES, type VhdxImages,
} from './vhdx-fixtures.js';

const t = tmpDir('vmdn-vhdx-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
let img: VhdxImages;
let ref: Buffer;
let parentRef: Buffer;
let childRef: Buffer;

before(async () => {
  img = await makeVhdxImages(t.dir);
  ref = await fs.readFile(img.raw);
  await fs.copyFile(img.dynamic, at('parent.vhdx'));
  parentRef = ref;
  await qemuImg('create', '-f', 'vhdx', '-o', 'block_size=1M', at('child.vhdx'), String(SIZE));
  await writeRandom(t.dir, 'vhdx', at('child.vhdx'), 7, [[512 << 10, 4096], [2 * MiB + 8192, 64 << 10], [5 * MiB, 1000]]);
  const own = await rawOf(at('child.vhdx'), 'vhdx');
  const b = await fs.readFile(at('child.vhdx'));
  childRef = Buffer.from(parentRef);
  // qemu allocates whole blocks: a present block is the child's (zeros where it wrote nothing)
  for (let blk = 0; blk < 6; blk++) if ((b.readBigUInt64LE(batAt(b, blk)) & 7n) === 6n) own.copy(childRef, blk * MiB, blk * MiB, (blk + 1) * MiB);
  await makeDifferencing(at('child.vhdx'), at('parent.vhdx'), '.\\parent.vhdx');
});
after(() => t.cleanup());

async function readsAs(file: string, want: Buffer, opts: { allowBacking?: string[] } = {}): Promise<VhdxDisk> {
  const disk = await openDisk(file, opts);
  try {
    assert.equal(disk.format, 'vhdx');
    await assertSameContent(disk, want, 3 * MiB - 4096);
    await assertExtents(disk, want);
    return disk as VhdxDisk;
  } finally {
    await disk.close();
  }
}

describe('VHDX reader', () => {
  it('CRC-32C matches the Castagnoli check value and a second implementation', () => {
    assert.equal(libCrc(Buffer.from('123456789')), 0xe3069283);
    const r = prng(5, 10000);
    assert.equal(libCrc(r, 40), crc32c(r, 40));
  });

  it('a .vhdx name asks for vhdx output; it cannot go to a pipe (its BAT precedes the data)', async () => {
    assert.equal(formatFromPath('x.vhdx'), 'vhdx');
    assert.equal(formatFromPath('x.img', 'vhdx'), 'vhdx');
    await assert.rejects(openWriter('-', 4096, 'vhdx'), (e: VmdnError) => e.code === 'E_USAGE');
  });

  it('probes VHDX by its file identifier', async () => {
    assert.equal(await probeFormat(img.dynamic), 'vhdx');
    assert.equal(await probeFormat(img.fixed), 'vhdx');
  });

  it('reads fixed and dynamic images as qemu does', async () => {
    for (const f of [img.fixed, img.dynamic]) {
      assert.deepEqual(await rawOf(f, 'vhdx'), ref);
      await readsAs(f, ref);
    }
  });

  it('reads a differencing disk over its parent', async () => {
    const d = await readsAs(at('child.vhdx'), childRef);
    assert.ok(d.parent);
  });

  it('PARTIALLY_PRESENT blocks read sectors by the bitmap; ZERO blocks hide the parent', async () => {
    const b = await fs.readFile(at('child.vhdx'));
    assert.equal(b.length % MiB, 0);
    const data = prng(99, MiB);
    const blockAt = b.length;
    const bitmap = Buffer.alloc(MiB);
    bitmap[(2048 + 8) >> 3] = 0xff; // block 1 = sectors 2048..4095 of chunk 0; sectors 8..15 of it (bytes 4096..8191) are the child's
    const out = Buffer.concat([b, data, bitmap]);
    out.writeBigUInt64LE((BigInt(blockAt / MiB) << 20n) | 7n, batAt(b, 1));
    out.writeBigUInt64LE((BigInt(blockAt / MiB + 1) << 20n) | 6n, region(b, 'bat').offset + 4096 * 8);
    out.writeBigUInt64LE(2n, batAt(b, 3)); // ZERO
    await fs.writeFile(at('partial.vhdx'), out);
    const want = Buffer.from(childRef);
    data.copy(want, MiB + 4096, 4096, 8192);
    want.fill(0, 3 * MiB, 4 * MiB);
    assert.ok(parentRef.subarray(3 * MiB, 4 * MiB).some((x) => x !== 0));
    await readsAs(at('partial.vhdx'), want);
  });

  it('opens a parent outside the child\'s directory only when trusted; refuses a wrong linkage, a missing parent, loops', async () => {
    await fs.mkdir(at('sub'));
    const fresh = async (name: string): Promise<string> => {
      await qemuImg('create', '-f', 'vhdx', '-o', 'block_size=1M', at(name), String(SIZE));
      return at(name);
    };
    await makeDifferencing(await fresh('sub/c.vhdx'), at('parent.vhdx'), '..\\parent.vhdx');
    await expectCode(at('sub/c.vhdx'), 'E_BACKING', (f) => VhdxDisk.open(f));
    await readsAs(at('sub/c.vhdx'), parentRef, { allowBacking: [at('parent.vhdx')] });
    await makeDifferencing(await fresh('wrong.vhdx'), at('parent.vhdx'), 'parent.vhdx', '{00000000-1111-2222-3333-444444444444}');
    await expectCode(at('wrong.vhdx'), 'E_BACKING', (f) => VhdxDisk.open(f));
    await makeDifferencing(await fresh('orphan.vhdx'), at('parent.vhdx'), 'gone.vhdx');
    await expectCode(at('orphan.vhdx'), 'E_BACKING', (f) => VhdxDisk.open(f));
    await makeDifferencing(await fresh('noname.vhdx'), at('parent.vhdx'), null);
    await expectCode(at('noname.vhdx'), 'E_BACKING', (f) => VhdxDisk.open(f));
    await makeDifferencing(await fresh('self.vhdx'), at('self.vhdx'), 'self.vhdx');
    await expectCode(at('self.vhdx'), 'E_BACKING', (f) => VhdxDisk.open(f));
    await fresh('la.vhdx');
    await fresh('lb.vhdx');
    await makeDifferencing(at('la.vhdx'), at('lb.vhdx'), 'lb.vhdx');
    await makeDifferencing(at('lb.vhdx'), at('la.vhdx'), 'la.vhdx');
    await expectCode(at('la.vhdx'), 'E_BACKING', (f) => VhdxDisk.open(f));
  });
});

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** What qemu reads from `b` after replaying its log (qemu replays only on a writable open: on a copy). */
async function qemuAfterReplay(b: Buffer, name: string): Promise<Buffer> {
  await fs.writeFile(at(name), b);
  await qemuImg('check', '-r', 'all', '-f', 'vhdx', at(name));
  return rawOf(at(name), 'vhdx');
}

describe('VHDX log replay', () => {
  const guid = randomBytes(16);

  it('replays data and zero descriptors in memory, as qemu does, and leaves the file untouched', async () => {
    const b = await fs.readFile(img.dynamic);
    const page = prng(42, 4096);
    const ops = [
      { kind: 'data' as const, fileOffset: blockOffset(b, 3) + (512 << 10), data: page }, // guest 3.5 MiB
      { kind: 'zero' as const, fileOffset: blockOffset(b, 0), length: 8192 }, // guest 0..8 KiB
    ];
    dirty(b, guid, [[0, logEntry(5n, guid, ops, b.length)]]);
    await fs.writeFile(at('dirty.vhdx'), b);
    const want = Buffer.from(ref);
    page.copy(want, 3.5 * MiB);
    want.fill(0, 0, 8192);
    assert.deepEqual(await qemuAfterReplay(b, 'dirty-q.vhdx'), want, 'qemu replays the constructed log the same way');
    const before = sha(await fs.readFile(at('dirty.vhdx')));
    const d = await readsAs(at('dirty.vhdx'), want);
    assert.equal(d.replayed, 1);
    assert.equal(sha(await fs.readFile(at('dirty.vhdx'))), before, 'the input was written to');
  });

  it('replays metadata (a zeroed BAT) and a two-entry sequence in order; stale entries of another log are ignored', async () => {
    const b = await fs.readFile(img.dynamic);
    const bat = region(b, 'bat').offset;
    const e1 = logEntry(5n, guid, [{ kind: 'data', fileOffset: blockOffset(b, 5), data: prng(1, 4096) }], b.length, 0);
    const e2 = logEntry(6n, guid, [{ kind: 'zero', fileOffset: bat, length: 4096 }], b.length, 0);
    const stale = logEntry(9n, randomBytes(16), [{ kind: 'zero', fileOffset: bat, length: 4096 }], b.length, 0);
    dirty(b, guid, [[0, e1], [e1.length, e2], [64 << 10, stale]]);
    await fs.writeFile(at('dirty2.vhdx'), b);
    const want = Buffer.alloc(SIZE); // the replayed BAT says every block is absent
    assert.deepEqual(await qemuAfterReplay(b, 'dirty2-q.vhdx'), want);
    assert.equal((await readsAs(at('dirty2.vhdx'), want)).replayed, 2);
  });

  it('refuses a log with no valid entry, a broken sequence, foreign descriptors, writes past the end', async () => {
    const make = async (name: string, edit: (b: Buffer, bat: number) => Array<[number, Buffer]>): Promise<string> => {
      const b = await fs.readFile(img.dynamic);
      dirty(b, guid, edit(b, region(b, 'bat').offset));
      await fs.writeFile(at(name), b);
      return at(name);
    };
    const zero = (bat: number): Array<{ kind: 'zero'; fileOffset: number; length: number }> => [{ kind: 'zero', fileOffset: bat, length: 4096 }];
    await expectCode(await make('l-crc.vhdx', (b, bat) => { const e = logEntry(5n, guid, zero(bat), b.length); e[100] ^= 1; return [[0, e]]; }), 'E_FORMAT', (f) => VhdxDisk.open(f));
    await expectCode(await make('l-none.vhdx', () => []), 'E_FORMAT', (f) => VhdxDisk.open(f));
    await expectCode(await make('l-tail.vhdx', (b, bat) => [[8192, logEntry(5n, guid, zero(bat), b.length, 0)]]), 'E_FORMAT', (f) => VhdxDisk.open(f));
    await expectCode(await make('l-gap.vhdx', (b, bat) => [[0, logEntry(5n, guid, zero(bat), b.length, 0)], [4096, logEntry(7n, guid, zero(bat), b.length, 0)]]), 'E_FORMAT', (f) => VhdxDisk.open(f));
    await expectCode(await make('l-seq.vhdx', (b, bat) => {
      const e = logEntry(5n, guid, zero(bat), b.length);
      e.writeBigUInt64LE(4n, 64 + 24); // the descriptor's sequence number
      fixCrc(e, 0, e.length);
      return [[0, e]];
    }), 'E_FORMAT', (f) => VhdxDisk.open(f));
    await expectCode(await make('l-eof.vhdx', (b) => [[0, logEntry(5n, guid, [{ kind: 'data', fileOffset: b.length, data: prng(2, 4096) }], b.length)]]), 'E_TRUNCATED', (f) => VhdxDisk.open(f));
  });
});

let n = 0;
async function bad(src: string, code: ErrorCode, edit: (b: Buffer) => Buffer | void): Promise<void> {
  const b = await fs.readFile(src);
  const out = edit(b) ?? b;
  const file = at(`bad-${n++}.vhdx`);
  await fs.writeFile(file, out);
  await expectCode(file, code, (f) => VhdxDisk.open(f));
}

/** Edit a metadata item of the dynamic image (metadata carries no checksum). */
const meta = (item: 'params' | 'size' | 'logical', fn: (b: Buffer, at: number) => void) => (b: Buffer): void => fn(b, metaData(b, item));

describe('VHDX reader rejects bad input', () => {
  it('truncated files', async () => {
    const size = (await fs.stat(img.dynamic)).size;
    for (const cut of [100, 70000, 300 << 10, 1.5 * MiB, size >> 1, size - 1]) await bad(img.dynamic, 'E_TRUNCATED', (b) => b.subarray(0, cut));
  });

  it('one bad header: the other is used; both bad, equal sequences, other versions: refused', async () => {
    const b = await fs.readFile(img.dynamic);
    b[curHeader(b) + 200] ^= 1;
    await fs.writeFile(at('onehdr.vhdx'), b);
    await readsAs(at('onehdr.vhdx'), ref);
    await bad(img.dynamic, 'E_FORMAT', (x) => { for (const h of HEADERS) x[h + 200] ^= 1; });
    await bad(img.dynamic, 'E_FORMAT', (x) => { for (const h of HEADERS) x.writeBigUInt64LE(7n, h + 8); fixHeaders(x); });
    await bad(img.dynamic, 'E_UNSUPPORTED', (x) => { for (const h of HEADERS) x.writeUInt16LE(2, h + 66); fixHeaders(x); });
    await bad(img.dynamic, 'E_FORMAT', (x) => { for (const h of HEADERS) x.writeBigUInt64LE(BigInt(MiB + 4096), h + 72); fixHeaders(x); });
    await bad(img.dynamic, 'E_TRUNCATED', (x) => { for (const h of HEADERS) x.writeBigUInt64LE(1n << 40n, h + 72); fixHeaders(x); });
    await bad(img.dynamic, 'E_FORMAT', (x) => void x.write('vhdxfilf', 0, 'latin1'));
  });

  it('region tables: a bad first copy falls back to the second; bad both, misplaced or unknown regions refused', async () => {
    const b = await fs.readFile(img.dynamic);
    b[REGION_TABLES[0] + 5000] ^= 1;
    await fs.writeFile(at('onert.vhdx'), b);
    await readsAs(at('onert.vhdx'), ref);
    await bad(img.dynamic, 'E_FORMAT', (x) => { for (const r of REGION_TABLES) x[r + 5000] ^= 1; });
    const rt = (fn: (x: Buffer) => void) => (x: Buffer): void => { fn(x); fixRegionTables(x); };
    await bad(img.dynamic, 'E_TRUNCATED', rt((x) => { for (const r of REGION_TABLES) x.writeBigUInt64LE(1n << 40n, region(x, 'bat').entry - REGION_TABLES[0] + r + 16); }));
    await bad(img.dynamic, 'E_FORMAT', rt((x) => { const m = region(x, 'meta').offset; for (const r of REGION_TABLES) x.writeBigUInt64LE(BigInt(m), region(x, 'bat').entry - REGION_TABLES[0] + r + 16); }));
    await bad(img.dynamic, 'E_FORMAT', rt((x) => { for (const r of REGION_TABLES) x.writeBigUInt64LE(BigInt(64 << 10), region(x, 'meta').entry - REGION_TABLES[0] + r + 16); }));
    await bad(img.dynamic, 'E_FORMAT', rt((x) => { for (const r of REGION_TABLES) x.writeUInt32LE(4096, region(x, 'bat').entry - REGION_TABLES[0] + r + 24); }));
    await bad(img.dynamic, 'E_FORMAT', rt((x) => { for (const r of REGION_TABLES) x.writeUInt32LE(2047 + 1, r + 8); }));
    await bad(img.dynamic, 'E_UNSUPPORTED', rt((x) => { const e = region(x, 'meta').entry; for (const r of REGION_TABLES) { x[e - REGION_TABLES[0] + r] ^= 0x55; x.writeUInt32LE(1, e - REGION_TABLES[0] + r + 28); } }));
    await bad(img.dynamic, 'E_FORMAT', rt((x) => { const e = region(x, 'meta').entry; for (const r of REGION_TABLES) { x[e - REGION_TABLES[0] + r] ^= 0x55; x.writeUInt32LE(0, e - REGION_TABLES[0] + r + 28); } }));
  });

  it('BAT entries past the end, into the headers or regions, shared, or in unknown states', async () => {
    const ent = (blk: number, v: bigint) => (x: Buffer): void => void x.writeBigUInt64LE(v, batAt(x, blk));
    await bad(img.dynamic, 'E_TRUNCATED', ent(0, (1n << 40n) | 6n));
    await bad(img.dynamic, 'E_FORMAT', ent(0, 6n));
    await bad(img.dynamic, 'E_FORMAT', (x) => ent(0, (BigInt(region(x, 'meta').offset / MiB) << 20n) | 6n)(x));
    await bad(img.dynamic, 'E_FORMAT', (x) => ent(0, (BigInt(region(x, 'bat').offset / MiB) << 20n) | 6n)(x));
    await bad(img.dynamic, 'E_FORMAT', (x) => ent(1, x.readBigUInt64LE(batAt(x, 0)))(x));
    await bad(img.dynamic, 'E_FORMAT', (x) => ent(0, x.readBigUInt64LE(batAt(x, 0)) | 7n)(x)); // partially present without parent
    await bad(img.dynamic, 'E_FORMAT', (x) => ent(0, (x.readBigUInt64LE(batAt(x, 0)) & ~7n) | 4n)(x));
  });

  it('absurd sizes, block sizes and sector sizes', async () => {
    await bad(img.dynamic, 'E_FORMAT', meta('size', (x, a) => void x.writeBigUInt64LE(1n << 60n, a)));
    await bad(img.dynamic, 'E_FORMAT', meta('size', (x, a) => void x.writeBigUInt64LE(BigInt(SIZE + 100), a)));
    await bad(img.dynamic, 'E_UNSUPPORTED', meta('size', (x, a) => void x.writeBigUInt64LE(60n << 40n, a)));
    await bad(img.dynamic, 'E_FORMAT', meta('size', (x, a) => void x.writeBigUInt64LE(1n << 40n, a))); // BAT region too small
    for (const bs of [0, 512 << 10, 3 * MiB, 512 * MiB, 0xffffffff]) await bad(img.dynamic, 'E_FORMAT', meta('params', (x, a) => void x.writeUInt32LE(bs, a)));
    await bad(img.dynamic, 'E_FORMAT', meta('logical', (x, a) => void x.writeUInt32LE(1024, a)));
  });
});
