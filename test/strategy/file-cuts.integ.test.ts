/**
 * File-aware cuts: the same files at different disk offsets give the same
 * chunks (disk cuts miss most of them), exports stay bit-identical
 * (qemu-img compare), and --sparsify drops unused blocks while the blocks
 * layer stays identical (vmdn diff --layer blocks).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdnOk, sh, qemuCompare } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';
import { sparseFile } from '../helpers/disk-checks.js';

const MiB = 2 ** 20;

describe('file-aware chunk cuts', () => {
  let t: ReturnType<typeof tmpDir>;
  let one: string;
  let two: string;
  before(() => {
    t = tmpDir('vmdn-file-cuts-');
    // two filesystems holding the same 40 files; the second has 3 MiB of other data written first,
    // so every shared file sits at another offset (and not a multiple of any chunk size away)
    const make = (name: string, lead: number) => {
      const tree = path.join(t.dir, `${name}.tree`);
      fs.mkdirSync(tree);
      if (lead) fs.writeFileSync(path.join(tree, '0-lead'), prng(99, lead));
      for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(tree, `f${i}`), prng(i + 1, 50_000 + i * 7_777));
      const img = path.join(t.dir, `${name}.raw`);
      sparseFile(img, 64 * MiB);
      sh('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, img]);
      // garbage in free blocks: kept by default, dropped by --sparsify
      const fd = fs.openSync(img, 'r+');
      fs.writeSync(fd, prng(7, MiB), 0, MiB, 60 * MiB);
      fs.closeSync(fd);
      return img;
    };
    one = make('one', 0);
    two = make('two', 3 * MiB + 12_345);
  });
  after(() => t.cleanup());

  it('the same files at other offsets dedup with file cuts, far less with disk cuts', () => {
    const added = (cuts: string) => {
      const store = path.join(t.dir, `store-${cuts}`);
      vmdnOk(store, ['import', one, '--name', 'one', '--cuts', cuts]);
      return vmdnOk(store, ['import', two, '--name', 'two', '--cuts', cuts]).stats.newBytes;
    };
    const byFiles = added('files');
    const byDisk = added('disk');
    // new data in `two`: the 3 MiB lead file plus metadata; the 40 shared files (~8 MiB) must not count
    assert.ok(byFiles < 4.5 * MiB, `file cuts added ${byFiles} bytes`);
    assert.ok(byDisk > byFiles + 2 * MiB, `disk cuts added ${byDisk} vs file cuts ${byFiles}`);
  });

  it('exports bit-identical with file cuts', () => {
    const store = path.join(t.dir, 'store-files');
    const out = path.join(t.dir, 'two.out.raw');
    vmdnOk(store, ['export', 'two', out]);
    const cmp = qemuCompare(two, out);
    assert.ok(cmp.identical, cmp.out);
  });

  it('--sparsify (and --fidelity blocks) drop unused blocks; the blocks layer stays identical', () => {
    const store = path.join(t.dir, 'store-sparse');
    const full = vmdnOk(store, ['import', two, '--name', 'full']).stats.dataBytes;
    const sparse = vmdnOk(store, ['import', two, '--name', 'sparse', '--sparsify']);
    assert.equal(sparse.sparsify, true);
    assert.ok(sparse.stats.dataBytes <= full - MiB, `${sparse.stats.dataBytes} vs ${full}`);
    assert.equal(vmdnOk(store, ['import', two, '--name', 'auto', '--fidelity', 'blocks']).manifest, sparse.manifest);
    const out = path.join(t.dir, 'two.sparse.raw');
    vmdnOk(store, ['export', 'sparse', out]);
    assert.equal(qemuCompare(two, out).identical, false, 'the garbage in free blocks is gone');
    const d = vmdnOk(store, ['diff', two, out, '--layer', 'blocks']);
    assert.equal(d.identical, true, JSON.stringify(d).slice(0, 1000));
    assert.equal(vmdnOk(store, ['diff', two, out, '--layer', 'files']).identical, true);
  });
});
