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
    // Two filesystems holding the same 80 small files (16-56 KB, around the chunk size). In the
    // second a file of its own sits between each pair, so the shared files have other neighbours
    // and other offsets: chunks cut over the disk straddle file ends and mostly change.
    const make = (name: string, own: boolean) => {
      const tree = path.join(t.dir, `${name}.tree`);
      fs.mkdirSync(tree);
      for (let i = 0; i < 80; i++) {
        fs.writeFileSync(path.join(tree, `f${String(i).padStart(2, '0')}-a`), prng(i + 1, 16_384 + ((i * 7_919) % 40_000)));
        if (own) fs.writeFileSync(path.join(tree, `f${String(i).padStart(2, '0')}-b`), prng(1000 + i, 5_000 + ((i * 131) % 3_000)));
      }
      const img = path.join(t.dir, `${name}.raw`);
      sparseFile(img, 64 * MiB);
      sh('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, img]);
      // garbage in free blocks: kept by default, dropped by --sparsify
      const fd = fs.openSync(img, 'r+');
      fs.writeSync(fd, prng(7, MiB), 0, MiB, 60 * MiB);
      fs.closeSync(fd);
      return img;
    };
    one = make('one', false);
    two = make('two', true);
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
    // new in `two`: 80 own files (~0.5 MiB) plus metadata; the 80 shared files (~2.9 MiB) must not count
    assert.ok(byFiles < 1.5 * MiB, `file cuts added ${byFiles} bytes`);
    assert.ok(byDisk > byFiles + MiB, `disk cuts added ${byDisk} vs file cuts ${byFiles}`);
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
