/**
 * VMDK against qemu: every subformat qemu-img writes (and a hand-built
 * multi-extent descriptor) reads back identical to its source, through the
 * Disk interface and through `vmdn import` + `vmdn export`; both VMDK
 * outputs pass `qemu-img check` and compare identical; the streamOptimized
 * output streamed through a pipe is byte for byte the file output; and the
 * same disk imported from VMDK and from raw shares every data object.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { openDisk, probeFormat } from '../../src/container/open.js';
import { tmpDir } from '../helpers/tmp.js';
import { CLI, vmdnOk, qemuCompare } from '../helpers/cli.js';
import { qemuImg, assertSameContent, assertExtents } from './qcow2-fixtures.js';
import { SUBFORMATS, makeSource, convertTo, makeMultiExtent, qemuIoRaw } from './vmdk-fixtures.js';

const t = tmpDir('vmdn-vmdk-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
const store = at('store');
const src = at('src.raw');
const images: Record<string, string> = {};
let multi: { desc: string; ref: string };
let multiZero: { desc: string; ref: string };

before(async () => {
  await makeSource(src);
  for (const s of SUBFORMATS) images[s] = await convertTo(src, t.dir, s);
  multi = await makeMultiExtent(src, at('multi'));
  multiZero = await makeMultiExtent(src, at('multi'), true);
});

after(() => t.cleanup());

describe('vmdk made by qemu-img reads back identical', () => {
  for (const s of SUBFORMATS) {
    it(`${s}: Disk reads and extents match the source`, async () => {
      assert.equal(await probeFormat(images[s]), 'vmdk');
      const ref = await fs.readFile(src);
      const disk = await openDisk(images[s]);
      try {
        assert.equal(disk.format, 'vmdk');
        await assertSameContent(disk, ref, 768 * 1024 + 512); // reads that straddle grains
        await assertExtents(disk, ref);
      } finally {
        await disk.close();
      }
    });

    it(`${s}: vmdn import + export to raw is identical to the source`, () => {
      vmdnOk(store, ['import', images[s], '-n', `q-${s.toLowerCase()}`]);
      const out = at(`${s}.out.raw`);
      vmdnOk(store, ['export', `q-${s.toLowerCase()}`, out]);
      assert.ok(qemuCompare(src, out).identical, qemuCompare(src, out).out);
    });
  }

  it('twoGbMaxExtentSparse over two real extents (2.05 GiB, mostly holes) imports identical', async () => {
    const dir = at('two');
    await fs.mkdir(dir);
    const big = path.join(dir, 'big.raw');
    await fs.writeFile(big, '');
    await fs.truncate(big, 2100 * 1024 * 1024);
    await qemuIoRaw(big, 'write -P 0x33 0 64k', 'write -P 0x44 2047M 2M', 'write -P 0x55 2099M 1M'); // one write across the extent boundary
    const vmdk = path.join(dir, 'two.vmdk');
    await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', big, vmdk);
    assert.match(await fs.readFile(vmdk, 'latin1'), /two-s002\.vmdk/);
    vmdnOk(store, ['import', vmdk, '-n', 'two']);
    const out = path.join(dir, 'out.raw');
    vmdnOk(store, ['export', 'two', out]);
    assert.ok(qemuCompare(big, out).identical);
  });

  it('a hand-built descriptor of sparse and flat extents (qemu agrees) imports identical', () => {
    assert.ok(qemuCompare(multi.desc, multi.ref).identical, 'fixture: qemu reads the descriptor as the reference');
    vmdnOk(store, ['import', multi.desc, '-n', 'multi']);
    const out = at('multi.out.raw');
    vmdnOk(store, ['export', 'multi', out]);
    assert.ok(qemuCompare(multi.ref, out).identical);
  });

  it('a ZERO extent between sparse and flat ones reads as zeros', async () => {
    const ref = await fs.readFile(multiZero.ref);
    const disk = await openDisk(multiZero.desc);
    try {
      await assertSameContent(disk, ref, 1536 * 1024);
      await assertExtents(disk, ref);
    } finally {
      await disk.close();
    }
  });

  it('the same disk imported from vmdk and from raw shares all its data objects', () => {
    const s = at('share-store');
    const fromVmdk = vmdnOk(s, ['import', images.streamOptimized, '-n', 'v']);
    const fromRaw = vmdnOk(s, ['import', src, '-n', 'r']);
    assert.ok(fromVmdk.stats.newObjects > 0);
    assert.equal(fromRaw.stats.newObjects, 0, 'the raw import found every object already stored');
    assert.equal(fromRaw.stats.distinctChunks, fromVmdk.stats.distinctChunks);
  });
});

describe('vmdk output', () => {
  before(() => {
    vmdnOk(store, ['import', src, '-n', 'src']);
  });

  for (const [format, subformat] of [['vmdk', 'streamOptimized'], ['vmdk-sparse', 'monolithicSparse']] as const) {
    it(`--format ${format}: qemu-img check is clean, the image compares identical, and vmdn reads it back`, async () => {
      const out = at(`out-${format}.vmdk`);
      const r = vmdnOk(store, ['export', 'src', out, '--format', format]);
      assert.equal(r.format, format);
      await qemuImg('check', out); // exits non-zero on any error or leak
      const info = JSON.parse(await qemuImg('info', '--output=json', out));
      assert.equal(info['format-specific'].data['create-type'], subformat);
      assert.equal(info['virtual-size'], (await fs.stat(src)).size);
      assert.ok(qemuCompare(src, out).identical, qemuCompare(src, out).out);
      vmdnOk(store, ['import', out, '-n', `back-${format}`]);
      const raw = at(`back-${format}.raw`);
      vmdnOk(store, ['export', `back-${format}`, raw]);
      assert.ok(qemuCompare(src, raw).identical);
    });
  }

  it('a .vmdk name means streamOptimized', () => {
    assert.equal(vmdnOk(store, ['export', 'src', at('by-name.vmdk')]).format, 'vmdk');
  });

  it('streamOptimized streamed to stdout through a pipe is byte for byte the file output', async () => {
    // disk.vmdk: the name the embedded descriptor carries on stdout, so the two outputs can be equal
    const file = at('pipe', 'disk.vmdk');
    await fs.mkdir(path.dirname(file));
    vmdnOk(store, ['export', 'src', file, '--format', 'vmdk']);
    const r = spawnSync(process.execPath, [CLI, 'export', 'src', '-', '--store', store], { maxBuffer: 64 << 20 });
    assert.equal(r.status, 0, String(r.stderr));
    assert.match(String(r.stderr), /exported src:latest to -/);
    assert.ok(Buffer.compare(r.stdout, await fs.readFile(file)) === 0, 'pipe output differs from the file output');
    // qcow2 cannot be streamed (its tables precede the data): refused before writing anything
    const raw = spawnSync(process.execPath, [CLI, 'export', 'src', '-', '--format', 'qcow2', '--store', store]);
    assert.equal(raw.status, 2);
    assert.equal(raw.stdout.length, 0);
  });
});
