/**
 * Damaged and hostile qcow2 images: each must fail with the expected
 * VmdnError code, from open() or while walking extents and reading.
 * Valid images come from qemu-img and are then patched byte by byte.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { openDisk } from '../../src/container/open.js';
import { Qcow2Disk } from '../../src/container/qcow2/reader.js';
import { MAX_BACKING_DEPTH } from '../../src/container/qcow2/layout.js';
import type { ErrorCode } from '../../src/errors.js';
import { writeRaw, prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { MiB, qemuImg, qemuIo, patched, expectCode, headerInfo, type HeaderInfo } from './qcow2-fixtures.js';

const t = tmpDir('vmdn-qcow2-bad-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
const open = (f: string) => Qcow2Disk.open(f);
const img = { v3: '', v2: '', comp: '', ext: '', small: '', top: '' };

before(async () => {
  const src = at('src.raw');
  writeRaw(src, 16 * MiB, [
    { offset: 0, data: Buffer.from('compressible text\n'.repeat(15000)) }, // so -c really compresses the first clusters
    { offset: 5 * MiB, data: prng(2, MiB) },
    { offset: 15 * MiB, data: prng(3, 512 * 1024) },
  ]);
  const conv = async (name: string, ...o: string[]): Promise<string> => {
    await qemuImg('convert', '-O', 'qcow2', ...o, src, at(name));
    return at(name);
  };
  img.v3 = await conv('v3.qcow2');
  img.v2 = await conv('v2.qcow2', '-o', 'compat=0.10');
  img.comp = await conv('comp.qcow2', '-c');
  img.ext = await conv('ext.qcow2', '-o', 'extended_l2=on');
  img.small = await conv('small.qcow2', '-o', 'cluster_size=4k'); // 8 L1 entries
  img.top = at('top.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', 'v3.qcow2', '-F', 'qcow2', img.top);
  await qemuIo(img.top, 'write -P 0x5a 64k 64k');
});

after(() => t.cleanup());

let n = 0;
/** Patch a copy of `src` and expect `code` when opening and reading it. */
async function bad(src: string, code: ErrorCode, edit: (b: Buffer, h: HeaderInfo) => Buffer | void): Promise<void> {
  const file = await patched(src, at(`bad-${n++}.qcow2`), edit);
  await expectCode(file, code, open);
}

/** Offset of the first allocated entry in the first L2 table. */
function firstEntry(b: Buffer, h: HeaderInfo, entrySize = 8): number {
  for (let o = h.firstL2; o < h.firstL2 + h.clusterSize; o += entrySize) if (b.readBigUInt64BE(o) !== 0n) return o;
  throw new Error('no allocated L2 entry');
}

const past = (b: Buffer, h: HeaderInfo): bigint => BigInt(Math.ceil(b.length / h.clusterSize) * h.clusterSize + 16 * h.clusterSize);

describe('qcow2 reader rejects bad input', () => {
  it('truncated files', async () => {
    const size = (await fs.stat(img.v3)).size;
    await bad(img.v3, 'E_TRUNCATED', (b) => b.subarray(0, 0));
    for (const cut of [40, 71, 100, 4096, 65536 + 100, size >> 1, size - 65536 - 1]) {
      await bad(img.v3, 'E_TRUNCATED', (b) => b.subarray(0, cut));
    }
    for (const src of [img.comp, img.ext, img.v2]) {
      const s = (await fs.stat(src)).size;
      await bad(src, 'E_TRUNCATED', (b) => b.subarray(0, s >> 1));
    }
  });

  it('table offsets past EOF, unaligned or overlapping the header', async () => {
    await bad(img.v3, 'E_TRUNCATED', (b, h) => void b.writeBigUInt64BE(past(b, h), 40)); // L1
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeBigUInt64BE(0n, 40));
    await bad(img.v3, 'E_FORMAT', (b, h) => void b.writeBigUInt64BE(BigInt(h.l1Offset + 512), 40));
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeBigUInt64BE(1n << 60n, 40));
    await bad(img.v3, 'E_TRUNCATED', (b, h) => void b.writeBigUInt64BE(past(b, h), 48)); // refcount table
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeBigUInt64BE(0n, 48));
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeUInt32BE(0xffffffff, 56));
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeUInt32BE(0, 56));
    await bad(img.v3, 'E_TRUNCATED', (b, h) => void b.writeBigUInt64BE(past(b, h), h.l1Offset)); // L2 table
    await bad(img.v3, 'E_FORMAT', (b, h) => void b.writeBigUInt64BE(BigInt(h.firstL2 + 512), h.l1Offset));
    await bad(img.v3, 'E_FORMAT', (b, h) => void b.writeBigUInt64BE(BigInt(h.firstL2) | (1n << 56n), h.l1Offset));
    await bad(img.small, 'E_FORMAT', (b, h) => void b.writeBigUInt64BE(BigInt(h.firstL2), h.l1Offset + 8)); // shared L2
  });

  it('bad L2 entries', async () => {
    const set = (src: string, code: ErrorCode, f: (old: bigint, b: Buffer, h: HeaderInfo) => bigint, size = 8) =>
      bad(src, code, (b, h) => {
        const o = firstEntry(b, h, size);
        b.writeBigUInt64BE(f(b.readBigUInt64BE(o), b, h), o);
      });
    await set(img.v3, 'E_TRUNCATED', (old, b, h) => (old & (1n << 63n)) | past(b, h));
    await set(img.v3, 'E_FORMAT', (old) => old + 512n);
    await set(img.v3, 'E_FORMAT', (old) => old | (1n << 57n));
    await set(img.v3, 'E_FORMAT', (old) => old | 2n);
    await set(img.v2, 'E_FORMAT', (old) => old | 1n); // zero flag needs v3
    const comp = await fs.readFile(img.comp);
    assert.ok(comp.readBigUInt64BE(firstEntry(comp, headerInfo(comp))) & (1n << 62n), 'first cluster of comp.qcow2 is compressed');
    await set(img.comp, 'E_TRUNCATED', (old, b) => (old & ~((1n << 54n) - 1n)) | BigInt(b.length + 10 * 65536));
    await set(img.comp, 'E_FORMAT', (old) => old & ~((1n << 54n) - 1n) | 100n); // compressed data inside the header
    await set(img.ext, 'E_FORMAT', (old) => old | 1n, 16); // bit 0 is reserved with extended L2
    // Extended L2: a subcluster both allocated and zero; allocated without offset.
    await bad(img.ext, 'E_FORMAT', (b, h) => {
      const o = firstEntry(b, h, 16);
      b.writeUInt32BE(b.readUInt32BE(o + 12), o + 8);
    });
    await bad(img.ext, 'E_FORMAT', (b, h) => void b.writeBigUInt64BE(0n, firstEntry(b, h, 16)));
    // Garbage where compressed data should be.
    await bad(img.comp, 'E_FORMAT', (b, h) => {
      const e = b.readBigUInt64BE(firstEntry(b, h));
      const off = Number(e & ((1n << 54n) - 1n));
      b.fill(0xff, off, off + 1024);
    });
  });

  it('header fields out of range', async () => {
    for (const bits of [0, 8, 22, 0xffffffff]) await bad(img.v3, 'E_FORMAT', (b) => void b.writeUInt32BE(bits, 20));
    for (const size of [1n << 62n, (1n << 64n) - 1n, 65n << 40n]) await bad(img.v3, 'E_FORMAT', (b) => void b.writeBigUInt64BE(size, 24));
    for (const l1 of [0xffffffff, 0x7fffffff, 0]) await bad(img.v3, 'E_FORMAT', (b) => void b.writeUInt32BE(l1, 36));
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeUInt32BE(105, 100)); // header_length not a multiple of 8
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeUInt32BE(1 << 20, 100));
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeUInt32BE(7, 96)); // refcount_order
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeUInt8(1, 104)); // zstd type without the feature bit
    await bad(img.v3, 'E_FORMAT', (b) => { // extension overrunning the header cluster
      b.writeUInt32BE(0x12345678, 112);
      b.writeUInt32BE(0xffffff00, 112 + 4);
    });
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeUInt32BE(0x7fffffff, 60)); // nb_snapshots
    await bad(img.v3, 'E_UNSUPPORTED', (b) => void b.writeUInt32BE(4, 4)); // version
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeUInt32BE(0, 0)); // magic
    await bad(img.top, 'E_FORMAT', (b) => void b.writeUInt32BE(5000, 16)); // backing name length
    await bad(img.top, 'E_FORMAT', (b) => void b.writeBigUInt64BE(1n << 40n, 8)); // backing name offset
  });

  it('feature bits and encryption', async () => {
    for (const bit of [5n, 31n, 63n]) await bad(img.v3, 'E_UNSUPPORTED', (b) => void b.writeBigUInt64BE(1n << bit, 72));
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeBigUInt64BE(1n, 72)); // dirty
    await bad(img.v3, 'E_FORMAT', (b) => void b.writeBigUInt64BE(2n, 72)); // corrupt
    await bad(img.v3, 'E_UNSUPPORTED', (b) => void b.writeBigUInt64BE(4n, 72)); // external data file
    await bad(img.v3, 'E_UNSUPPORTED', (b) => void b.writeUInt32BE(1, 32)); // AES
    const luks = at('luks.qcow2');
    // LUKS times its key derivation, and on a loaded machine qemu-img can fail to ("Unable to get accurate CPU usage"): try again
    for (let attempt = 1; ; attempt++) {
      try {
        await qemuImg('create', '-f', 'qcow2', '--object', 'secret,id=s0,data=pw', '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', luks, '16M');
        break;
      } catch (err) {
        if (attempt >= 5 || !/accurate CPU usage/.test(String(err))) throw err;
      }
    }
    await expectCode(luks, 'E_UNSUPPORTED', openDisk);
    const df = at('datafile.qcow2');
    await qemuImg('create', '-f', 'qcow2', '-o', `data_file=${at('datafile.raw')}`, df, '16M');
    await expectCode(df, 'E_UNSUPPORTED', openDisk);
  });

  it('bad backing chains', async () => {
    const mk = async (name: string, backing: string): Promise<string> => {
      await qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', backing, '-F', 'qcow2', at(name), '16M');
      return at(name);
    };
    await expectCode(await mk('missing.qcow2', 'nope.qcow2'), 'E_BACKING', openDisk);
    await mk('loop-a.qcow2', 'loop-b.qcow2');
    await expectCode(await mk('loop-b.qcow2', 'loop-a.qcow2'), 'E_BACKING', openDisk);
    await expectCode(at('loop-a.qcow2'), 'E_BACKING', openDisk);
    await qemuImg('create', '-q', '-f', 'qcow2', at('self.qcow2'), '16M');
    await qemuImg('rebase', '-u', '-b', 'self.qcow2', '-F', 'qcow2', at('self.qcow2'));
    await expectCode(at('self.qcow2'), 'E_BACKING', openDisk);
    // Same file under another name (symlink, and a "sub/../" spelling): a loop even where the name is trusted.
    await fs.mkdir(at('sub'));
    await fs.symlink('sym-a.qcow2', at('sym-link.qcow2'));
    await mk('sym-a.qcow2', 'sub/../sym-link.qcow2');
    await expectCode(at('sym-a.qcow2'), 'E_BACKING', openDisk);
    await assert.rejects(openDisk(at('sym-a.qcow2'), { allowBacking: [at('sym-link.qcow2')] }), { code: 'E_BACKING', message: /loops back/ });
    await expectCode(await mk('dir.qcow2', 'sub'), 'E_BACKING', openDisk);
    await expectCode(await mk('json.qcow2', 'json:{"driver":"null-co"}'), 'E_UNSUPPORTED', openDisk);
    // Depth: a chain one longer than allowed fails, the longest allowed one opens.
    await qemuImg('create', '-q', '-f', 'qcow2', at('d0.qcow2'), '16M');
    for (let i = 1; i <= MAX_BACKING_DEPTH + 1; i++) await mk(`d${i}.qcow2`, `d${i - 1}.qcow2`);
    await expectCode(at(`d${MAX_BACKING_DEPTH + 1}.qcow2`), 'E_BACKING', openDisk);
    const ok = await openDisk(at(`d${MAX_BACKING_DEPTH}.qcow2`));
    await ok.close();
  });

  it('a missing top-level file is E_NOT_FOUND', async () => {
    await assert.rejects(openDisk(at('does-not-exist.qcow2')), { name: 'VmdnError', code: 'E_NOT_FOUND' });
  });
});
