/**
 * VDI reader against qemu: static and dynamic images made by qemu-img read
 * exactly as `qemu-img convert -O raw` does; damaged and hostile files fail
 * with a code.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { openDisk, probeFormat } from '../../src/container/open.js';
import { VdiDisk } from '../../src/container/vdi/reader.js';
import type { ErrorCode } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { assertSameContent, assertExtents, expectCode } from './qcow2-fixtures.js';
import { MiB, makeImages, rawOf, type Images } from './vhd-vdi-fixtures.js';

const t = tmpDir('vmdn-vdi-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
let img: Images;

before(async () => {
  img = await makeImages(t.dir);
});
after(() => t.cleanup());

describe('VDI reader', () => {
  it('probes and reads static and dynamic images as qemu does', async () => {
    for (const f of [img.vdiStatic, img.vdiDynamic]) {
      assert.equal(await probeFormat(f), 'vdi');
      const ref = await rawOf(f, 'vdi');
      const disk = await openDisk(f);
      try {
        assert.equal(disk.format, 'vdi');
        await assertSameContent(disk, ref);
        const ext = await assertExtents(disk, ref);
        // the dynamic image allocates only the blocks written to
        if (f === img.vdiDynamic) assert.ok(ext.reduce((s, e) => s + e.length, 0) < disk.virtualSize);
      } finally {
        await disk.close();
      }
    }
  });
});

let n = 0;
async function bad(src: string, code: ErrorCode, edit: (b: Buffer) => Buffer | void): Promise<void> {
  const b = await fs.readFile(src);
  const file = at(`bad-${n++}.vdi`);
  await fs.writeFile(file, edit(b) ?? b);
  await expectCode(file, code, (f) => VdiDisk.open(f));
}

const bmap = (b: Buffer): number => b.readUInt32LE(0x154);
const data = (b: Buffer): number => b.readUInt32LE(0x158);
/** Offset in the file of the first allocated block map entry. */
function firstUsed(b: Buffer): number {
  for (let i = 0; ; i++) if (b.readUInt32LE(bmap(b) + i * 4) < 0xfffffffe) return bmap(b) + i * 4;
}

describe('VDI reader rejects bad input', () => {
  it('truncated files', async () => {
    for (const src of [img.vdiDynamic, img.vdiStatic]) {
      const size = (await fs.stat(src)).size;
      for (const cut of [0x100, 0x1ff, 0x210, size >> 1, size - 1]) await bad(src, 'E_TRUNCATED', (b) => b.subarray(0, cut));
    }
  });

  it('block map entries past the end, out of range or shared', async () => {
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(b.readUInt32LE(0x180), firstUsed(b)));
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(0x7fffffff, firstUsed(b)));
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => { const e = firstUsed(b); b.writeUInt32LE(b.readUInt32LE(e), e + 4); });
    // a block inside the map's range but past the end of the file
    await bad(img.vdiDynamic, 'E_TRUNCATED', (b) => void b.writeUInt32LE(b.readUInt32LE(0x180) - 1, firstUsed(b)));
  });

  it('block map and data offsets into the header, unaligned or overlapping', async () => {
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(0, 0x154));
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(0x100, 0x154));
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(bmap(b) + 1, 0x154));
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(bmap(b), 0x158));
    await bad(img.vdiDynamic, 'E_TRUNCATED', (b) => { b.writeUInt32LE(0x40000000, 0x154); b.writeUInt32LE(0x40000000 + data(b), 0x158); });
  });

  it('absurd sizes and block sizes', async () => {
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeBigUInt64LE(1n << 60n, 0x170));
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeBigUInt64LE(BigInt(b.readUInt32LE(0x180)) * BigInt(MiB) + 512n, 0x170));
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeBigUInt64LE(1000n, 0x170));
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(0xffffffff, 0x180));
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(b.readUInt32LE(0x180) + 1, 0x184)); // more allocated than exist
    for (const bs of [0, 512, 3 * MiB, 2 ** 30]) await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(bs, 0x178));
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(4096, 0x168)); // sector size
  });

  it('other versions, types and differencing images', async () => {
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(0xbeda1070, 0x40));
    await bad(img.vdiDynamic, 'E_UNSUPPORTED', (b) => void b.writeUInt32LE(0x00010000, 0x44));
    await bad(img.vdiDynamic, 'E_FORMAT', (b) => void b.writeUInt32LE(0x190, 0x48));
    for (const type of [3, 4, 0]) await bad(img.vdiDynamic, 'E_UNSUPPORTED', (b) => void b.writeUInt32LE(type, 0x4c));
    await bad(img.vdiDynamic, 'E_UNSUPPORTED', (b) => void (b[0x1b8] = 1)); // a parent uuid
    await bad(img.vdiDynamic, 'E_UNSUPPORTED', (b) => void b.writeUInt32LE(512, 0x17c)); // block_extra
  });
});
