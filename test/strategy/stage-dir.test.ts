/** Stage directories: private, reachable at any depth, and cleaned up after dead processes. */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { makeStage, removeStaleStages, StagePaths } from '../../src/strategy/files/stage-dir.js';
import { tmpDir } from '../helpers/tmp.js';

const LEVEL = 'x'.repeat(240);

describe('stage directories', () => {
  const t = tmpDir('vmdn-stage-dir-');
  after(() => spawnSync('rm', ['-rf', '--', t.dir]));

  it('makeStage: a 0700 directory named with our pid, the tree root inside it', async () => {
    const s = await makeStage(t.dir);
    assert.match(path.basename(s.dir), new RegExp(`^vmdn-stage-${process.pid}-`));
    assert.equal(fs.statSync(s.dir).mode & 0o777, 0o700);
    assert.equal(s.root, path.join(s.dir, 'root'));
    assert.ok(fs.statSync(s.root).isDirectory());
  });

  it('StagePaths: every path fits one syscall and names the right file, over more deep branches than handles kept open', () => {
    const root = path.join(t.dir, 'deep');
    fs.mkdirSync(root);
    const paths = new StagePaths(root);
    const branches = 100;
    const depth = 18; // 18 x 241 bytes: past PATH_MAX below the root
    try {
      for (let b = 0; b < branches; b++) {
        let rel = `b${b}`;
        paths.trim();
        fs.mkdirSync(paths.of(Buffer.from(rel)));
        for (let d = 0; d < depth; d++) {
          rel += `/${LEVEL}`;
          paths.trim();
          const p = paths.of(Buffer.from(rel));
          assert.ok(p.length < 4096, `path of ${p.length} bytes`);
          fs.mkdirSync(p);
        }
        paths.trim();
        fs.writeFileSync(paths.of(Buffer.from(`${rel}/marker`)), `branch ${b}`, { flag: 'wx' });
      }
    } finally {
      paths.close();
    }
    // read back by walking down with relative chdirs, independently of StagePaths
    const home = process.cwd();
    try {
      for (let b = 0; b < branches; b++) {
        process.chdir(path.join(root, `b${b}`));
        for (let d = 0; d < depth; d++) process.chdir(LEVEL);
        assert.equal(fs.readFileSync('marker', 'utf8'), `branch ${b}`);
      }
    } finally {
      process.chdir(home);
    }
  });

  it('removeStaleStages: removes stages of dead processes only', async () => {
    const parent = path.join(t.dir, 'parent');
    fs.mkdirSync(parent);
    const dead = spawnSync('true').pid!;
    const mk = (name: string) => {
      fs.mkdirSync(path.join(parent, name, 'root', 'ro'), { recursive: true });
      fs.chmodSync(path.join(parent, name, 'root', 'ro'), 0o555);
    };
    mk(`vmdn-stage-${dead}-stale0`);
    mk(`vmdn-stage-${process.pid}-live00`);
    mk('vmdn-stage-other');
    fs.writeFileSync(path.join(parent, `vmdn-stage-${dead}-file00`), 'not a directory');
    assert.deepEqual(await removeStaleStages({ parents: [parent], dryRun: true }), [path.join(parent, `vmdn-stage-${dead}-stale0`)]);
    assert.equal(fs.readdirSync(parent).length, 4);
    assert.deepEqual(await removeStaleStages({ parents: [parent] }), [path.join(parent, `vmdn-stage-${dead}-stale0`)]);
    assert.deepEqual(fs.readdirSync(parent).sort(), [`vmdn-stage-${dead}-file00`, `vmdn-stage-${process.pid}-live00`, 'vmdn-stage-other'].sort());
  });
});
