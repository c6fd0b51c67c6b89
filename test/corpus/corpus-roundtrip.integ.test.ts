/**
 * Every image of the shared corpus (real Debian VMs) goes in and comes back
 * bit-identical, checked by `qemu-img compare`; one qcow2 export is checked by
 * `qemu-img check`. Skips with a printed reason where the corpus is not built.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdnOk, sh, qemuCompare } from '../helpers/cli.js';
import { corpusDir, corpusImagesToday } from '../helpers/corpus.js';
import { tmpDir } from '../helpers/tmp.js';

const corpus = corpusDir();
if (corpus.reason) console.log(`# SKIP corpus round trip: ${corpus.reason}`);

describe('shared corpus round trip', { skip: corpus.reason }, () => {
  let t: ReturnType<typeof tmpDir>;
  let store: string;
  before(() => {
    t = tmpDir('vmdn-corpus-test-');
    store = path.join(t.dir, 'store');
  });
  after(() => t.cleanup());

  for (const name of corpusImagesToday()) {
    it(`${name}.qcow2 -> store -> raw is identical`, () => {
      const src = path.join(corpus.dir!, `${name}.qcow2`);
      const r = vmdnOk(store, ['import', src, '--name', `corpus/${name}`]);
      assert.ok(r.stats.dataBytes > 100 * 1024 * 1024);
      const out = path.join(t.dir, `${name}.raw`);
      vmdnOk(store, ['export', `corpus/${name}`, out]);
      const cmp = qemuCompare(src, out);
      assert.ok(cmp.identical, cmp.out);
      fs.rmSync(out);
    });
  }

  it('base.raw imports to the same chunks as base.qcow2 (raw reader, sparse)', () => {
    const r = vmdnOk(store, ['import', path.join(corpus.dir!, 'base.raw'), '--name', 'corpus/base-raw']);
    assert.equal(r.stats.newObjects, 0, 'every chunk of the raw file is already stored from the qcow2');
    assert.equal(r.stats.dataBytes, vmdnOk(store, ['images']).images.find((i: any) => i.ref === 'corpus/base:latest').dataBytes);
  });

  it('a qcow2 export of a corpus image passes qemu-img check and compares identical', () => {
    const out = path.join(t.dir, 'turn.qcow2');
    vmdnOk(store, ['export', 'corpus/turn', out]);
    const check = JSON.parse(sh('qemu-img', ['check', '--output=json', out]));
    assert.equal(check.leaks ?? 0, 0);
    assert.equal(check.corruptions ?? 0, 0);
    assert.ok(qemuCompare(path.join(corpus.dir!, 'turn.raw'), out).identical);
    fs.rmSync(out);
  });

  it('the store dedups across the corpus and verifies clean', () => {
    const s = vmdnOk(store, ['stats']);
    assert.ok(s.objectBytes < s.logicalBytes * 0.75, `dedup: ${s.objectBytes} of ${s.logicalBytes}`);
    assert.equal(vmdnOk(store, ['verify']).ok, true);
  });
});
