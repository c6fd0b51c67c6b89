/**
 * Round trips through the real CLI for every input kind, checked by qemu-img:
 * import, export raw and qcow2, `qemu-img compare` identical, `qemu-img check` clean.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdn, vmdnOk, sh, qemuCompare } from '../helpers/cli.js';
import { sampleDisk } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { damageOneObject } from '../helpers/object-bytes.js';

describe('CLI round trip, checked by qemu-img', () => {
  let t: ReturnType<typeof tmpDir>;
  let store: string;
  let src: string;
  const inputs: Record<string, string> = {};

  before(() => {
    t = tmpDir();
    store = path.join(t.dir, 'store');
    src = path.join(t.dir, 'src.raw');
    sampleDisk(src, 3);
    const f = (n: string) => path.join(t.dir, n);
    inputs.raw = src;
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', src, f('plain.qcow2')]);
    inputs.qcow2 = f('plain.qcow2');
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'compat=0.10', src, f('v2.qcow2')]);
    inputs['qcow2-v2'] = f('v2.qcow2');
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-c', src, f('zlib.qcow2')]);
    inputs['qcow2-zlib'] = f('zlib.qcow2');
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', 'compression_type=zstd', src, f('zstd.qcow2')]);
    inputs['qcow2-zstd'] = f('zstd.qcow2');
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'extended_l2=on,cluster_size=128k', src, f('el2.qcow2')]);
    // partial subcluster writes and a zeroed range so subcluster bitmaps matter
    sh('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 4100k 4k', '-c', 'write -z 40M 8k', f('el2.qcow2')]);
    inputs['qcow2-extended-l2'] = f('el2.qcow2');
    // two-level backing chain with relative backing names
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', src, f('base.qcow2')]);
    sh('qemu-img', ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', f('mid.qcow2')]);
    sh('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 1M 256k', '-c', 'write -z 40M 64k', f('mid.qcow2')]);
    sh('qemu-img', ['create', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', f('top.qcow2')]);
    sh('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x22 1100k 8k', '-c', 'write -P 0x33 60M 1M', f('top.qcow2')]);
    inputs['qcow2-backing-chain'] = f('top.qcow2');
  });
  after(() => t.cleanup());

  for (const kind of ['raw', 'qcow2', 'qcow2-v2', 'qcow2-zlib', 'qcow2-zstd', 'qcow2-extended-l2', 'qcow2-backing-chain']) {
    it(`${kind}: export raw is identical`, () => {
      const input = inputs[kind]!;
      const r = vmdnOk(store, ['import', input, '--name', `rt/${kind}`]);
      assert.match(r.manifest, /^[0-9a-f]{64}$/);
      const out = path.join(t.dir, `${kind}.out.raw`);
      vmdnOk(store, ['export', `rt/${kind}`, out]);
      const cmp = qemuCompare(input, out);
      assert.ok(cmp.identical, cmp.out);
      fs.rmSync(out);
    });
  }

  for (const compress of [undefined, 'zstd', 'deflate'] as const) {
    it(`export qcow2${compress ? ` --compress ${compress}` : ''} passes qemu-img check and compares identical`, () => {
      const out = path.join(t.dir, `out-${compress ?? 'plain'}.qcow2`);
      vmdnOk(store, ['export', 'rt/qcow2-backing-chain', out, ...(compress ? ['--compress', compress] : [])]);
      const check = JSON.parse(sh('qemu-img', ['check', '--output=json', out]));
      assert.equal(check.leaks ?? 0, 0);
      assert.equal(check.corruptions ?? 0, 0);
      assert.equal(check['check-errors'] ?? 0, 0);
      const cmp = qemuCompare(inputs['qcow2-backing-chain']!, out);
      assert.ok(cmp.identical, cmp.out);
      // and it re-imports to the same manifest: the qcow2 writer preserved every byte
      const again = vmdnOk(store, ['import', out, '--name', `rt/reimport-${compress ?? 'plain'}`]);
      const orig = vmdnOk(store, ['images']).images.find((i: any) => i.ref === 'rt/qcow2-backing-chain:latest');
      const mine = vmdnOk(store, ['images']).images.find((i: any) => i.ref === `rt/reimport-${compress ?? 'plain'}:latest`);
      assert.equal(mine.dataBytes, orig.dataBytes);
      assert.ok(again.stats.newObjects <= 1, `re-import added ${again.stats.newObjects} objects`);
    });
  }

  it('images, stats, rm, gc and verify work together', () => {
    const list = vmdnOk(store, ['images']).images;
    assert.ok(list.length >= 7);
    for (const i of list) {
      assert.ok(i.virtualBytes > 0 && i.storedBytes > 0 && i.uniqueBytes >= 0 && i.uniqueBytes <= i.storedBytes, JSON.stringify(i));
    }
    const stats = vmdnOk(store, ['stats']);
    assert.ok(stats.storedBytes < stats.logicalBytes / 3, 'seven similar images should dedup well');
    const chain = list.find((i: any) => i.ref === 'rt/qcow2-backing-chain:latest');
    const before = vmdnOk(store, ['stats']).objects;
    vmdnOk(store, ['rm', 'rt/qcow2-backing-chain', 'rt/reimport-plain', 'rt/reimport-zstd', 'rt/reimport-deflate']);
    const gc = vmdnOk(store, ['gc']);
    assert.ok(gc.removedObjects >= 1, 'the chain had objects of its own (its manifest at least)');
    assert.equal(vmdnOk(store, ['stats']).objects, before - gc.removedObjects);
    assert.ok(chain.uniqueBytes > 0);
    const v = vmdnOk(store, ['verify']);
    assert.equal(v.ok, true);
    assert.deepEqual(v.problems, []);
    const missing = vmdn(store, ['export', 'rt/qcow2-backing-chain', path.join(t.dir, 'x.raw')]);
    assert.equal(missing.status, 4);
    assert.equal(missing.json.error.code, 'E_NOT_FOUND');
  });

  it('verify finds a corrupted object and exits 5', async () => {
    const damaged = await damageOneObject(store);
    const r = vmdn(store, ['verify']);
    assert.equal(r.status, 5);
    assert.equal(r.json.ok, false);
    assert.ok(r.json.problems.some((p: any) => p.problem === 'corrupt' && p.digest === damaged));
  });
});
