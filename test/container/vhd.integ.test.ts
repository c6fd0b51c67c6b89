/**
 * VHD reader against qemu: fixed and dynamic images made by qemu-img read
 * exactly as `qemu-img convert -O raw` does; a differencing disk reads its
 * own blocks (sectors its bitmap marks) over its parent's; the parent is
 * opened only beside the child (or trusted), with the right id, without
 * loops; damaged and hostile files fail with a code.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { openDisk, probeFormat } from '../../src/container/open.js';
import { VhdDisk } from '../../src/container/vhd/reader.js';
import type { ErrorCode } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { assertSameContent, assertExtents, expectCode } from './qcow2-fixtures.js';
import {
  MiB, makeImages, qemuImg, writeRandom, makeDifferencing, mappedData, rawOf, fixVhdChecksums, patchFooters, dynOffset, batOffset, type Images,
} from './vhd-vdi-fixtures.js';

const t = tmpDir('vmdn-vhd-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
let img: Images;
let parentRef: Buffer;
/** The differencing child's expected content: parent, with the child's own blocks over it. */
let childRef: Buffer;

before(async () => {
  img = await makeImages(t.dir);
  await fs.copyFile(img.vhdDynamic, at('parent.vhd'));
  parentRef = await rawOf(at('parent.vhd'), 'vpc');
  await qemuImg('create', '-f', 'vpc', at('child.vhd'), String(parentRef.length));
  await writeRandom(t.dir, 'vpc', at('child.vhd'), 7, [[512 << 10, 4096], [2 * MiB + 8192, 64 << 10], [5 * MiB, 1000]]);
  const own = await mappedData(at('child.vhd'), 'vpc');
  assert.ok(own.length > 0);
  const childOwn = await rawOf(at('child.vhd'), 'vpc');
  childRef = Buffer.from(parentRef);
  for (const [s, n] of own) childOwn.copy(childRef, s, s, s + n);
  await makeDifferencing(at('child.vhd'), at('parent.vhd'), 'parent.vhd');
});

after(() => t.cleanup());

async function readsAs(file: string, ref: Buffer, opts: { allowBacking?: string[] } = {}): Promise<VhdDisk> {
  const disk = await openDisk(file, opts);
  try {
    assert.equal(disk.format, 'vhd');
    await assertSameContent(disk, ref);
    await assertExtents(disk, ref);
    return disk as VhdDisk;
  } finally {
    await disk.close();
  }
}

describe('VHD reader', () => {
  it('probes fixed and dynamic VHDs by their footer', async () => {
    assert.equal(await probeFormat(img.vhdFixed), 'vhd');
    assert.equal(await probeFormat(img.vhdDynamic), 'vhd');
  });

  it('reads fixed and dynamic images as qemu does', async () => {
    for (const f of [img.vhdFixed, img.vhdDynamic]) await readsAs(f, await rawOf(f, 'vpc'));
  });

  it('reads a differencing disk over its parent', async () => {
    const d = await readsAs(at('child.vhd'), childRef);
    assert.ok(d.parent);
  });

  it('a differencing block reads the sectors its bitmap leaves clear from the parent', async () => {
    const b = await fs.readFile(at('child.vhd'));
    const bat = batOffset(b);
    const block = 1; // holds the child's write at 2 MiB + 8 KiB
    const bitmapAt = b.readUInt32BE(bat + block * 4) * 512;
    b[bitmapAt + 2] = 0x00; // sectors 16..23 of the block: guest 2 MiB + 8 KiB .. + 12 KiB
    b[bitmapAt + 3] = 0x0f; // sectors 24..27 clear, 28..31 set
    await fs.writeFile(at('child-bits.vhd'), b);
    const ref = Buffer.from(childRef);
    parentRef.copy(ref, 2 * MiB + 8192, 2 * MiB + 8192, 2 * MiB + 8192 + 12 * 512);
    await readsAs(at('child-bits.vhd'), ref);
  });

  it('opens a parent outside the child\'s directory only when trusted', async () => {
    await fs.mkdir(at('sub'));
    await fs.copyFile(at('child.vhd'), at('sub', 'c.vhd'));
    await makeDifferencing(at('sub', 'c.vhd'), at('parent.vhd'), 'parent.vhd', '..\\parent.vhd');
    await expectCode(at('sub', 'c.vhd'), 'E_BACKING', (f) => VhdDisk.open(f));
    await readsAs(at('sub', 'c.vhd'), childRef, { allowBacking: [at('parent.vhd')] });
  });

  it('takes the parent name from the header when there is no locator', async () => {
    await fs.copyFile(at('child.vhd'), at('noloc.vhd'));
    await makeDifferencing(at('noloc.vhd'), at('parent.vhd'), 'parent.vhd', null);
    await readsAs(at('noloc.vhd'), childRef);
  });

  it('refuses a parent with another unique id, a missing parent, and loops', async () => {
    await fs.copyFile(at('child.vhd'), at('wrong.vhd'));
    await makeDifferencing(at('wrong.vhd'), img.vhdFixed, 'parent.vhd'); // names parent.vhd, expects fixed.vhd's id
    await expectCode(at('wrong.vhd'), 'E_BACKING', (f) => VhdDisk.open(f));
    await fs.copyFile(at('child.vhd'), at('orphan.vhd'));
    await makeDifferencing(at('orphan.vhd'), at('parent.vhd'), 'gone.vhd');
    await expectCode(at('orphan.vhd'), 'E_BACKING', (f) => VhdDisk.open(f));
    await fs.copyFile(at('child.vhd'), at('self.vhd'));
    await makeDifferencing(at('self.vhd'), at('self.vhd'), 'self.vhd');
    await expectCode(at('self.vhd'), 'E_BACKING', (f) => VhdDisk.open(f));
    // a -> b -> a
    await fs.copyFile(at('child.vhd'), at('loop-a.vhd'));
    await fs.copyFile(at('child.vhd'), at('loop-b.vhd'));
    await makeDifferencing(at('loop-a.vhd'), at('loop-b.vhd'), 'loop-b.vhd');
    await makeDifferencing(at('loop-b.vhd'), at('loop-a.vhd'), 'loop-a.vhd');
    await expectCode(at('loop-a.vhd'), 'E_BACKING', (f) => VhdDisk.open(f));
  });
});

let n = 0;
async function bad(src: string, code: ErrorCode, edit: (b: Buffer) => Buffer | void, fix = true): Promise<void> {
  const b = await fs.readFile(src);
  const out = edit(b) ?? b;
  if (fix) fixVhdChecksums(out);
  const file = at(`bad-${n++}.vhd`);
  await fs.writeFile(file, out);
  await expectCode(file, code, (f) => VhdDisk.open(f));
}

/** BAT offset of the first allocated block entry. */
function firstUsed(b: Buffer): number {
  const bat = batOffset(b);
  for (let i = 0; ; i++) if (b.readUInt32BE(bat + i * 4) !== 0xffffffff) return bat + i * 4;
}

describe('VHD reader rejects bad input', () => {
  it('truncated files', async () => {
    const size = (await fs.stat(img.vhdDynamic)).size;
    for (const cut of [0, 100, 511, 600, 1600, size >> 1, size - 512, size - 1]) await bad(img.vhdDynamic, 'E_TRUNCATED', (b) => b.subarray(0, cut), false);
  });

  it('BAT entries past the end, into the headers or the BAT, or sharing a block', async () => {
    await bad(img.vhdDynamic, 'E_TRUNCATED', (b) => void b.writeUInt32BE(0x7fffffff, firstUsed(b)));
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void b.writeUInt32BE(0, firstUsed(b)));
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void b.writeUInt32BE(dynOffset(b) / 512, firstUsed(b)));
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void b.writeUInt32BE(batOffset(b) / 512, firstUsed(b)));
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => { const e = firstUsed(b); b.writeUInt32BE(b.readUInt32BE(e), e + 4); });
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void b.writeUInt32BE((b.length - 2 * MiB - 512) / 512, firstUsed(b))); // block over the footer
  });

  it('header and BAT offsets out of place', async () => {
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => patchFooters(b, (x, a) => void x.writeBigUInt64BE(0n, a + 16)));
    await bad(img.vhdDynamic, 'E_TRUNCATED', (b) => patchFooters(b, (x, a) => void x.writeBigUInt64BE(1n << 40n, a + 16)));
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => patchFooters(b, (x, a) => void x.writeBigUInt64BE(1n << 62n, a + 16)));
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void b.writeBigUInt64BE(0n, dynOffset(b) + 16));
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void b.writeBigUInt64BE(BigInt(dynOffset(b)), dynOffset(b) + 16));
    await bad(img.vhdDynamic, 'E_TRUNCATED', (b) => void b.writeBigUInt64BE(1n << 40n, dynOffset(b) + 16));
  });

  it('absurd sizes and block sizes', async () => {
    const maxChs = (x: Buffer, a: number): void => { x.writeUInt16BE(65535, a + 56); x[a + 58] = 16; x[a + 59] = 255; };
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => patchFooters(b, (x, a) => { maxChs(x, a); x.writeBigUInt64BE(1n << 60n, a + 48); }));
    await bad(img.vhdFixed, 'E_TRUNCATED', (b) => patchFooters(b, (x, a) => { maxChs(x, a); x.writeBigUInt64BE(1n << 40n, a + 48); }));
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void b.writeUInt32BE(1, dynOffset(b) + 28)); // too few BAT entries
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void b.writeUInt32BE(0xffffffff, dynOffset(b) + 28));
    for (const bs of [0, 256, 3 * MiB, 2 ** 31, 2 ** 29]) await bad(img.vhdDynamic, 'E_FORMAT', (b) => void b.writeUInt32BE(bs, dynOffset(b) + 32));
  });

  it('bad checksums, cookies, versions and types', async () => {
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void (b[b.length - 512 + 70] ^= 1), false);
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void (b[70] ^= 1), false);
    await bad(img.vhdFixed, 'E_FORMAT', (b) => void (b[b.length - 512 + 70] ^= 1), false);
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void (b[dynOffset(b) + 100] ^= 1), false);
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void b.write('cxspars!', dynOffset(b), 'latin1'));
    await bad(img.vhdDynamic, 'E_UNSUPPORTED', (b) => patchFooters(b, (x, a) => void x.writeUInt32BE(0x00020000, a + 12)));
    await bad(img.vhdDynamic, 'E_UNSUPPORTED', (b) => patchFooters(b, (x, a) => void x.writeUInt32BE(5, a + 60)));
    await bad(img.vhdDynamic, 'E_FORMAT', (b) => void b.writeUInt32BE(2, 60)); // the start copy says fixed, the end dynamic
  });
});
