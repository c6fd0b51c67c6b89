/**
 * Files strategy: names and paths an ext4 can hold that the rebuild must not
 * trip over -- a root entry named like the stage's own helper files, paths
 * longer than PATH_MAX (4096 bytes, even below the filesystem root), and a
 * directory entry whose name holds '/' (corrupt: import refuses it, since no
 * rebuild can make it and a path would silently mean another file).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdn, vmdnOk, sh } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';
import { e2fsckPartition } from '../helpers/disk-checks.js';
import { ext4Disk, patchBytes } from '../helpers/ext4-disk.js';

const asRoot = process.getuid?.() === 0;
const DEPTH = 20;
const LONG = 'd'.repeat(250);

/** Import, export, and compare at the file layer (plus e2fsck of the rebuilt partition). */
function roundTrip(t: { dir: string }, disk: string, part: { start: number; size: number }, name: string): void {
  const store = path.join(t.dir, `store-${name}`);
  vmdnOk(store, ['import', disk, '--name', name, '--strategy', 'files']);
  const out = path.join(t.dir, `${name}.out.raw`);
  vmdnOk(store, ['export', name, out]);
  const d = vmdnOk(store, ['diff', disk, out, '--layer', 'files']);
  assert.equal(d.identical, true, JSON.stringify(d.volumes).slice(0, 2000));
  const fsck = e2fsckPartition(out, part.start, part.size, t.dir);
  assert.ok(fsck.clean, fsck.out);
}

describe('files strategy: names the stage must not depend on', { skip: asRoot ? false : 'export rebuilds filesystems as root' }, () => {
  let t: ReturnType<typeof tmpDir>;
  before(() => {
    t = tmpDir('vmdn-files-names-');
  });
  after(() => {
    sh('rm', ['-rf', '--', t.dir]); // deep trees: rm copes with paths past PATH_MAX
  });

  it('a root entry named .vmdn-special-0 beside a FIFO and a device', () => {
    const tree = path.join(t.dir, 'special-tree');
    fs.mkdirSync(tree);
    fs.writeFileSync(path.join(tree, '.vmdn-special-0'), 'a name the old stage used for itself');
    fs.mkdirSync(path.join(tree, '.vmdn-special-1'));
    sh('mkfifo', [path.join(tree, 'fifo')]);
    sh('mknod', [path.join(tree, 'null'), 'c', '1', '3']);
    const disk = path.join(t.dir, 'special.raw');
    const part = ext4Disk(tree, disk);
    roundTrip(t, disk, part, 'special');
  });

  it(`a path of ${DEPTH} levels of 250-byte names (longer than PATH_MAX) with file, xattr, FIFO, symlink and hard link at the bottom`, () => {
    const tree = path.join(t.dir, 'deep-tree');
    fs.mkdirSync(tree);
    // made at short paths (tools get no cwd this deep), moved down below
    const file = path.join(t.dir, 'deep-file');
    const fifo = path.join(t.dir, 'deep-fifo');
    fs.writeFileSync(file, 'at the bottom');
    sh('setfattr', ['-n', 'user.deep', '-v', 'yes', file]);
    sh('mkfifo', [fifo]);
    const home = process.cwd();
    // chdir step by step: no single call may take a path this long
    process.chdir(tree);
    try {
      for (let i = 0; i < DEPTH; i++) {
        fs.mkdirSync(LONG);
        process.chdir(LONG);
      }
      fs.renameSync(file, 'file');
      fs.renameSync(fifo, 'fifo');
      fs.linkSync('file', 'hard');
      fs.symlinkSync('file', 'link');
    } finally {
      process.chdir(home);
    }
    const disk = path.join(t.dir, 'deep.raw');
    const part = ext4Disk(tree, disk);
    roundTrip(t, disk, part, 'deep');
  });

  it('a directory entry whose name holds "/" is refused by import, naming it, and leaves nothing in the store', () => {
    const tree = path.join(t.dir, 'slash-tree');
    fs.mkdirSync(path.join(tree, 'd', 'slash'), { recursive: true });
    fs.writeFileSync(path.join(tree, 'd', 'slashXname'), 'would land in d/slash/name');
    const disk = path.join(t.dir, 'slash.raw');
    // no metadata_csum: the edited directory block needs no new checksum
    ext4Disk(tree, disk, { mke2fs: ['-O', '^metadata_csum'], patch: (p) => patchBytes(p, Buffer.from('slashXname'), Buffer.from('slash/name')) });
    const store = path.join(t.dir, 'store-slash');
    const r = vmdn(store, ['import', disk, '--name', 'slash', '--strategy', 'files']);
    assert.equal(r.status, 3, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /E_FORMAT/);
    assert.match(r.stdout + r.stderr, /d\/slash\/name/);
    const st = vmdnOk(store, ['stats']);
    assert.equal(st.images, 0);
    assert.equal(st.objects, 0, 'the failed import left objects behind');
  });
});
