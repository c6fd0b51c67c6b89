/**
 * Damaged and hostile VMDK images: each must fail with the expected
 * VmdnError code, from open() or while walking extents and reading; through
 * the CLI, `vmdn import` exits 3 and leaves nothing in the store. Valid
 * images come from qemu-img (and vmdn's own streamOptimized writer, the one
 * with its grain directory in the footer) and are patched byte by byte.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { VmdkDisk } from '../../src/container/vmdk/reader.js';
import type { ErrorCode } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { vmdn, vmdnOk } from '../helpers/cli.js';
import { expectCode, MiB } from './qcow2-fixtures.js';
import { makeSource, convertTo, makeMultiExtent } from './vmdk-fixtures.js';

const t = tmpDir('vmdn-vmdk-bad-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
const img = { sparse: '', stream: '', footer: '', multi: '' };
const store = at('store');

before(async () => {
  const src = at('src.raw');
  await makeSource(src);
  img.sparse = await convertTo(src, t.dir, 'monolithicSparse');
  img.stream = await convertTo(src, t.dir, 'streamOptimized');
  vmdnOk(store, ['import', src, '-n', 'keep']);
  img.footer = at('footer.vmdk');
  vmdnOk(store, ['export', 'keep', img.footer, '--format', 'vmdk']);
  img.multi = (await makeMultiExtent(src, at('multi'))).desc;
});

after(() => t.cleanup());

/** Little-endian header fields (sparse extent header, vmdk/layout.ts). */
const H = { version: 4, flags: 8, capacity: 12, grainSize: 20, gtes: 44, gdOffset: 56, overHead: 64, compress: 77 };
const gdOf = (b: Buffer): number => Number(b.readBigUInt64LE(H.gdOffset)) * 512;
/** File offset of the grain table entry of the first allocated grain, and its value. */
function firstGte(b: Buffer): { at: number; sector: number } {
  const gt = b.readUInt32LE(gdOf(b)) * 512;
  for (let i = 0; i < 512; i++) if (b.readUInt32LE(gt + i * 4) !== 0) return { at: gt + i * 4, sector: b.readUInt32LE(gt + i * 4) };
  throw new Error('fixture has no allocated grain in its first table');
}

let n = 0;
async function patched(src: string, edit: (b: Buffer) => Buffer | void): Promise<string> {
  const b = await fs.readFile(src);
  const out = at(`bad-${n++}.vmdk`);
  await fs.writeFile(out, edit(b) ?? b);
  return out;
}
const cut = (len: (b: Buffer) => number) => (b: Buffer): Buffer => b.subarray(0, len(b));

/** name, base image, edit, expected code, also through the CLI */
type Case = [string, keyof typeof img, (b: Buffer) => Buffer | void, ErrorCode, boolean?];
const cases: Case[] = [
  ['truncated inside the header', 'sparse', cut(() => 300), 'E_TRUNCATED', true],
  ['truncated before the end of the metadata area', 'sparse', cut(() => 20 * 1024), 'E_TRUNCATED'],
  ['truncated inside the grains', 'sparse', cut((b) => b.length - 70 * 1024), 'E_TRUNCATED', true],
  ['streamOptimized cut inside its footer', 'footer', cut((b) => b.length - 100), 'E_TRUNCATED'],
  ['streamOptimized without its end-of-stream marker', 'footer', cut((b) => b.length - 512), 'E_FORMAT', true],
  ['streamOptimized cut inside a compressed grain', 'stream', cut((b) => firstGte(b).sector * 512 + 40), 'E_TRUNCATED'],
  ['grain table entry past the end of the file', 'sparse', (b) => void b.writeUInt32LE(0x7fffff00, firstGte(b).at), 'E_TRUNCATED', true],
  ['grain table entry into the header', 'sparse', (b) => void b.writeUInt32LE(1, firstGte(b).at), 'E_FORMAT', true],
  ['grain table entry into the grain directory', 'sparse', (b) => void b.writeUInt32LE(gdOf(b) / 512, firstGte(b).at), 'E_FORMAT'],
  ['grain directory entry past the end of the file', 'sparse', (b) => void b.writeUInt32LE(0x7fffff00, gdOf(b)), 'E_TRUNCATED'],
  ['grain directory entry into the embedded descriptor', 'sparse', (b) => void b.writeUInt32LE(1, gdOf(b)), 'E_FORMAT'],
  ['grain directory past the end of the file', 'sparse', (b) => void b.writeBigUInt64LE(1n << 40n, H.gdOffset), 'E_TRUNCATED'],
  ['grain directory over the embedded descriptor', 'sparse', (b) => void b.writeBigUInt64LE(2n, H.gdOffset), 'E_FORMAT'],
  ['absurd capacity (2^60 sectors)', 'sparse', (b) => void b.writeBigUInt64LE(1n << 60n, H.capacity), 'E_FORMAT', true],
  ['capacity 0', 'sparse', (b) => void b.writeBigUInt64LE(0n, H.capacity), 'E_FORMAT'],
  ['grain size 0', 'sparse', (b) => void b.writeBigUInt64LE(0n, H.grainSize), 'E_FORMAT'],
  ['grain size 3 sectors (not a power of two)', 'sparse', (b) => void b.writeBigUInt64LE(3n, H.grainSize), 'E_FORMAT'],
  ['grain size 1 GiB', 'sparse', (b) => void b.writeBigUInt64LE(1n << 21n, H.grainSize), 'E_FORMAT', true],
  ['4096 entries per grain table', 'sparse', (b) => void b.writeUInt32LE(4096, H.gtes), 'E_FORMAT'],
  ['version 4', 'sparse', (b) => void b.writeUInt32LE(4, H.version), 'E_UNSUPPORTED'],
  ['damaged end-of-line check bytes', 'sparse', (b) => void b.write('\n \n\n', 73, 'latin1'), 'E_FORMAT'],
  ['unknown compression algorithm', 'stream', (b) => void b.writeUInt16LE(7, H.compress), 'E_UNSUPPORTED'],
  ['corrupt deflate data', 'stream', (b) => { const s = firstGte(b).sector * 512; b.fill(0x5a, s + 14, s + 40); }, 'E_FORMAT', true],
  ['compressed size larger than two grains', 'stream', (b) => void b.writeUInt32LE(1 << 20, firstGte(b).sector * 512 + 8), 'E_FORMAT'],
  ['grain marker with the wrong lba', 'stream', (b) => void b.writeBigUInt64LE(12345n, firstGte(b).sector * 512), 'E_FORMAT'],
  ['footer header that disagrees on capacity', 'footer', (b) => void b.writeBigUInt64LE(99n, b.length - 1024 + H.capacity), 'E_FORMAT'],
];

describe('vmdk reader rejects bad input', () => {
  for (const [name, base, edit, code] of cases) {
    it(`${name} -> ${code}`, async () => expectCode(await patched(img[base], edit), code, (f) => VmdkDisk.open(f)));
  }
});

describe('descriptors: extents only beside the descriptor, and only what is understood', () => {
  const desc = async (name: string, extentLines: string[], extra: string[] = []): Promise<string> => {
    const f = at('multi', name);
    await fs.writeFile(f, ['# Disk DescriptorFile', 'version=1', 'CID=1', 'parentCID=ffffffff', 'createType="twoGbMaxExtentSparse"', ...extra, ...extentLines, ''].join('\n'));
    return f;
  };
  const refused: [string, string[], ErrorCode, string[]?][] = [
    ['an extent path with ..', ['RW 4096 SPARSE "../multi/multi-s001.vmdk"'], 'E_FORMAT'],
    ['an extent path with /', ['RW 4096 SPARSE "sub/multi-s001.vmdk"'], 'E_FORMAT'],
    ['an absolute extent path', [`RW 4096 SPARSE "${at('multi', 'multi-s001.vmdk')}"`], 'E_FORMAT'],
    ['an extent path with a backslash', ['RW 4096 SPARSE "..\\\\multi-s001.vmdk"'], 'E_FORMAT'],
    ['an extent file that does not exist', ['RW 4096 SPARSE "nowhere.vmdk"'], 'E_FORMAT'],
    ['a flat extent shorter than the descriptor says', ['RW 4096 FLAT "multi-flat.vmdk" 8'], 'E_TRUNCATED'],
    ['a sparse extent smaller than the descriptor says', ['RW 8192 SPARSE "multi-s001.vmdk"'], 'E_FORMAT'],
    ['a FLAT extent without offset', ['RW 2048 FLAT "multi-flat.vmdk"'], 'E_FORMAT'],
    ['an unknown extent type', ['RW 2048 VMFSRAW "multi-flat.vmdk"'], 'E_UNSUPPORTED'],
    ['a line that is neither setting nor extent', ['RW 4096 SPARSE "multi-s001.vmdk"', 'what is this'], 'E_FORMAT'],
    ['no extents at all', [], 'E_FORMAT'],
    ['a delta disk (parent CID)', ['RW 4096 SPARSE "multi-s001.vmdk"'], 'E_UNSUPPORTED', ['parentFileNameHint="base.vmdk"']],
    ['an absurd extent size', ['RW 99999999999999999 SPARSE "multi-s001.vmdk"'], 'E_FORMAT'],
  ];
  let k = 0;
  for (const [name, lines, code, extra] of refused) {
    it(`${name} -> ${code}`, async () => expectCode(await desc(`d${k++}.vmdk`, lines, extra), code, (f) => VmdkDisk.open(f)));
  }

  it('a symlink escaping the directory is refused; one staying inside is followed', async () => {
    await fs.mkdir(at('outside'));
    await fs.copyFile(at('multi', 'multi-s001.vmdk'), at('outside', 'real.vmdk'));
    await fs.symlink(at('outside', 'real.vmdk'), at('multi', 'escape.vmdk'));
    await expectCode(await desc('esc.vmdk', ['RW 4096 SPARSE "escape.vmdk"']), 'E_FORMAT', (f) => VmdkDisk.open(f));
    await fs.symlink('multi-s001.vmdk', at('multi', 'inside.vmdk'));
    const d = await VmdkDisk.open(await desc('ins.vmdk', ['RW 4096 SPARSE "inside.vmdk"']));
    assert.equal(d.virtualSize, 2 * MiB);
    await d.close();
  });
});

describe('vmdn import of bad VMDK input exits 3 and leaves nothing in the store', () => {
  let objectsBefore = 0;
  before(() => {
    objectsBefore = vmdnOk(store, ['stats']).objects;
  });
  const viaCli: [string, () => Promise<string>, ErrorCode][] = cases.filter((c) => c[4]).map(([name, base, edit, code]) => [name, () => patched(img[base], edit), code]);
  viaCli.push(['an extent path with ..', async () => {
    const f = at('multi', 'dotdot.vmdk');
    await fs.writeFile(f, '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\nRW 2048 FLAT "../src.raw" 0\n');
    return f;
  }, 'E_FORMAT']);
  for (const [name, make, code] of viaCli) {
    it(name, async () => {
      const r = vmdn(store, ['import', await make(), '-n', 'bad']);
      assert.equal(r.status, 3, r.stdout + r.stderr);
      assert.equal(r.json?.error?.code, code, r.stdout);
    });
  }
  it('after all of them the store holds what it held before', () => {
    assert.deepEqual(vmdnOk(store, ['images']).images.map((i: { ref: string }) => i.ref), ['keep:latest']);
    assert.equal(vmdnOk(store, ['stats']).objects, objectsBefore);
  });
});
