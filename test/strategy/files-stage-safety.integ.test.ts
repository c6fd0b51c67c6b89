/**
 * Files export stages an image's tree on the host as root. An unprivileged
 * local user (uid 65534) races the export of an image whose root is 0777
 * 65534:65534 and which holds a setuid-root binary: it must not list, reach
 * or run anything staged, nor swap a staged directory for a symlink to a
 * host directory (which root's setfattr or mke2fs would then follow). And a
 * stage left by a killed export is removed by the next export and by gc.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { vmdnOk, sh } from '../helpers/cli.js';
import { vmdnAsync } from '../helpers/debs.js';
import { tmpDir } from '../helpers/tmp.js';
import { ext4Disk } from '../helpers/ext4-disk.js';
import { prng } from '../helpers/images.js';

const NOBODY = 65534;
const hasNobody = spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim() === String(NOBODY);
const skip = process.getuid?.() !== 0 ? 'needs root (export stages as root; the racer runs as nobody)' : !hasNobody ? 'needs the nobody user (uid 65534)' : false;

/**
 * The racer: polls the stage parent, walks whatever it can list in a stage,
 * runs any setuid file it reaches, and renames every directory it can and
 * plants a symlink to the host sentinel in its place. Prints one JSON line
 * per new finding: seen (a stage's name: proof it ran during the export),
 * listed, setuid, euid0, swapped, reached (a staged file found by guessing its path).
 */
const RACER = `
const fs = require('fs'), path = require('path'), cp = require('child_process');
const [parent, sentinel] = process.argv.slice(1);
const said = new Set();
const say = (kind, p) => { const k = kind + ' ' + p; if (!said.has(k)) { said.add(k); console.log(JSON.stringify({ kind, p })); } };
function walk(dir, depth) {
  let ents;
  try { ents = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
  say('listed', dir);
  for (const e of ents) {
    const p = path.join(dir, e.name);
    let st;
    try { st = fs.lstatSync(p); } catch { continue; }
    if (st.isFile() && (st.mode & 0o4000)) {
      say('setuid', p);
      const r = cp.spawnSync(p, [], { encoding: 'utf8' });
      if (/euid=0|^uid=0/.test(r.stdout || '')) say('euid0', p);
    }
    if (st.isDirectory() && !e.name.endsWith('.moved')) {
      try { fs.renameSync(p, p + '.moved'); fs.symlinkSync(sentinel, p); say('swapped', p); } catch {}
      if (depth < 6) walk(p, depth + 1);
    }
  }
}
console.log(JSON.stringify({ kind: 'ready' }));
for (const end = Date.now() + 300000; Date.now() < end; ) {
  let names = [];
  try { names = fs.readdirSync(parent); } catch {}
  for (const n of names) {
    if (!n.startsWith('vmdn-stage-')) continue;
    say('seen', n);
    walk(path.join(parent, n), 0);
    // and by guessing, should the stage be unlistable but passable
    walk(path.join(parent, n, 'root'), 0);
    try { fs.statSync(path.join(parent, n, 'root', 'bin', 'id')); say('reached', path.join(parent, n, 'root', 'bin', 'id')); } catch {}
  }
}
`;

function startRacer(parent: string, sentinel: string): Promise<{ child: ChildProcess; lines: Array<{ kind: string; p?: string }> }> {
  const child = spawn(process.execPath, ['-e', RACER, parent, sentinel], { uid: NOBODY, gid: NOBODY, cwd: '/', stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: Array<{ kind: string; p?: string }> = [];
  let buf = '';
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.stdout!.on('data', (b: Buffer) => {
      buf += b.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const l = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (l.kind === 'ready') resolve({ child, lines });
        else lines.push(l);
      }
    });
  });
}

/** A stage as a killed export leaves it: private, holding a read-only directory. */
function fakeStage(parent: string, pid: number, tag: string): string {
  const dir = path.join(parent, `vmdn-stage-${pid}-${tag}`);
  fs.mkdirSync(path.join(dir, 'root', 'ro'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'root', 'ro', 'f'), 'left behind');
  fs.chmodSync(path.join(dir, 'root', 'ro'), 0o555);
  return dir;
}

describe('files export: the stage is private to the exporting process', { skip }, () => {
  let t: ReturnType<typeof tmpDir>;
  let shm: string;
  let sentinel: string;
  let disk: string;
  let store: string;
  const saved = process.env.VMDN_STAGE_DIR;
  before(() => {
    t = tmpDir('vmdn-stage-safety-');
    fs.chmodSync(t.dir, 0o755);
    // a world-writable sticky stage parent, as /dev/shm is
    shm = path.join(t.dir, 'shm');
    fs.mkdirSync(shm);
    fs.chmodSync(shm, 0o1777);
    process.env.VMDN_STAGE_DIR = shm;
    sentinel = path.join(t.dir, 'sentinel');
    fs.mkdirSync(sentinel);
    fs.writeFileSync(path.join(sentinel, 'f'), 'host');
    const tree = path.join(t.dir, 'tree');
    fs.mkdirSync(path.join(tree, 'bin'), { recursive: true });
    fs.copyFileSync('/usr/bin/id', path.join(tree, 'bin', 'id'));
    fs.chmodSync(path.join(tree, 'bin', 'id'), 0o4755);
    fs.mkdirSync(path.join(tree, 'd'));
    fs.writeFileSync(path.join(tree, 'd', 'f'), 'image');
    sh('setfattr', ['-n', 'user.vmdn', '-v', 'staged', path.join(tree, 'd', 'f')]);
    fs.chownSync(path.join(tree, 'd'), NOBODY, NOBODY);
    fs.chmodSync(path.join(tree, 'd'), 0o777);
    // enough to stage that the export takes a while
    fs.mkdirSync(path.join(tree, 'many'));
    for (let i = 0; i < 2000; i++) fs.writeFileSync(path.join(tree, 'many', `f${i}`), `file ${i}\n`.repeat(i % 50));
    for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(tree, `big${i}`), prng(i + 1, 24 << 20));
    fs.chownSync(tree, NOBODY, NOBODY);
    fs.chmodSync(tree, 0o777);
    disk = path.join(t.dir, 'disk.raw');
    ext4Disk(tree, disk, { sizeMiB: 160 });
    sh('rm', ['-rf', '--', tree]);
    store = path.join(t.dir, 'store');
    vmdnOk(store, ['import', disk, '--name', 'img', '--strategy', 'files']);
  });
  after(() => {
    if (saved === undefined) delete process.env.VMDN_STAGE_DIR;
    else process.env.VMDN_STAGE_DIR = saved;
    sh('rm', ['-rf', '--', t.dir]);
  });

  it('an unprivileged racer sees no staged file and changes nothing outside the stage', async () => {
    const { child, lines } = await startRacer(shm, sentinel);
    let r;
    try {
      r = await vmdnAsync(store, ['export', 'img', path.join(t.dir, 'out.raw')]);
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((res) => (child.exitCode !== null || child.signalCode !== null ? res(null) : child.on('exit', res)));
    const found = lines.filter((l) => l.kind !== 'seen');
    assert.ok(lines.some((l) => l.kind === 'seen'), 'the racer never saw the stage: the test proves nothing');
    assert.deepEqual(found, [], 'the racer reached the stage');
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.deepEqual(fs.readdirSync(sentinel), ['f']);
    assert.equal(fs.readFileSync(path.join(sentinel, 'f'), 'utf8'), 'host');
    assert.equal(sh('getfattr', ['-d', '-m', '-', path.join(sentinel, 'f')]), '', 'root wrote xattrs onto a host file');
    const d = vmdnOk(store, ['diff', disk, path.join(t.dir, 'out.raw'), '--layer', 'files']);
    assert.equal(d.identical, true, JSON.stringify(d.volumes).slice(0, 2000));
    assert.deepEqual(fs.readdirSync(shm), [], 'the export left its stage behind');
  });

  it('a stage left by a dead process is removed by the next export and by gc; a live one stays', () => {
    const dead = spawnSync('true').pid!;
    const live = fakeStage(shm, process.pid, 'live00');
    const stale = fakeStage(shm, dead, 'stale0');
    vmdnOk(store, ['export', 'img', path.join(t.dir, 'out2.raw')]);
    assert.ok(!fs.existsSync(stale), 'export kept a dead process\'s stage');
    assert.ok(fs.existsSync(live), 'export removed a live process\'s stage');
    fakeStage(shm, dead, 'stale1');
    vmdnOk(store, ['gc']);
    assert.deepEqual(fs.readdirSync(shm), [path.basename(live)]);
  });
});
