/**
 * inspect/ls/cat/diff on small images made with mke2fs -d: a pair of trees
 * differing in known ways (diff must report exactly those, with the right
 * "what changed"), hostile names (listed as data, escaped for terminals),
 * cat's refusals, and a stored image listing exactly like its file.
 */
import { it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { CLI, vmdn, vmdnOk } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';

const t = tmpDir('vmdn-inspect-');
after(() => t.cleanup());
const store = path.join(t.dir, 'store');
const T0 = 1700000000;

/** mke2fs -d with a fixed clock, so lost+found and the root get the same times in every image. */
function mkfs(tree: string, img: string): void {
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', 'syn', '-d', tree, img, '16M'], { env: { ...process.env, E2FSPROGS_FAKE_TIME: String(T0) }, stdio: 'ignore' });
}

/** Build a tree with python3: byte names, xattrs and lutimes that Node's fs cannot all do. */
function py(script: string, ...args: string[]): void {
  execFileSync('python3', ['-c', script, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
}

const PAIR = `
import os, sys
root, side = sys.argv[1], sys.argv[2]
os.makedirs(root + '/d/sub')
def w(p, data, mode=0o644):
    with open(root + p, 'wb') as f: f.write(data)
    os.chmod(root + p, mode)
w('/same.txt', b'unchanged\\n')
w('/d/content.txt', b'version ' + side.encode() + b'\\n')      # same size, different bytes
w('/d/sub/mode.sh', b'#!/bin/sh\\n', 0o755 if side == 'a' else 0o700)
os.symlink('target-' + side, root + '/d/link')
w('/attr.txt', b'x\\n')
os.setxattr(root + '/attr.txt', 'user.color', b'blue' if side == 'a' else b'green')
os.setxattr(root + '/same.txt', 'user.keep', b'same')
w('/removed.txt' if side == 'a' else '/added.txt', b'only on one side\\n')
for dp, dns, fns in os.walk(root, topdown=False):
    for n in dns + fns:
        os.utime(os.path.join(dp, n), (${T0}, ${T0}), follow_symlinks=False)
os.utime(root, (${T0}, ${T0}))
`;

const imgA = path.join(t.dir, 'a.img'), imgB = path.join(t.dir, 'b.img');
py(PAIR, path.join(t.dir, 'tree-a'), 'a');
py(PAIR, path.join(t.dir, 'tree-b'), 'b');
mkfs(path.join(t.dir, 'tree-a'), imgA);
mkfs(path.join(t.dir, 'tree-b'), imgB);

it('diff --layer files: exactly the made changes, each with what changed', () => {
  const r = vmdnOk(store, ['diff', imgA, imgB, '--layer', 'files']);
  assert.equal(r.identical, false);
  assert.equal(r.volumes.length, 1);
  const f = r.volumes[0].files;
  assert.deepEqual(f.added.map((e: any) => e.path), ['/added.txt']);
  assert.deepEqual(f.removed.map((e: any) => e.path), ['/removed.txt']);
  assert.deepEqual(f.changed.map((c: any) => [c.path, c.what]), [
    ['/attr.txt', ['xattrs']],
    ['/d/content.txt', ['content']],
    ['/d/link', ['target']],
    ['/d/sub/mode.sh', ['mode']],
  ]);
  const by = Object.fromEntries(f.changed.map((c: any) => [c.path, c]));
  assert.deepEqual(by['/attr.txt'].xattrs, ['user.color']);
  assert.equal(by['/attr.txt'].b.xattrs['user.color'], '0x' + Buffer.from('green').toString('hex'));
  assert.notEqual(by['/d/content.txt'].a.sha256, by['/d/content.txt'].b.sha256);
  assert.deepEqual([by['/d/link'].a.target, by['/d/link'].b.target], ['target-a', 'target-b']);
  assert.deepEqual([by['/d/sub/mode.sh'].a.perm, by['/d/sub/mode.sh'].b.perm], [0o755, 0o700]);
  assert.deepEqual(f.errors, []);
  // The human form says the same, one line per path.
  const text = spawnSync(process.execPath, [CLI, 'diff', imgA, imgB, '--layer', 'files', '--store', store], { encoding: 'utf8' });
  assert.equal(text.status, 0);
  assert.match(text.stdout, /^\+ \/added\.txt$/m);
  assert.match(text.stdout, /^= \/d\/sub\/mode\.sh {2}\(mode\)$/m);
});

it('diff: an image against itself has no differences on every layer (exit 0, "no differences")', () => {
  for (const layer of ['disk', 'blocks', 'files']) {
    assert.equal(vmdnOk(store, ['diff', imgA, imgA, '--layer', layer]).identical, true, layer);
    const text = spawnSync(process.execPath, [CLI, 'diff', imgA, imgA, '--layer', layer, '--store', store], { encoding: 'utf8' });
    assert.equal(text.status, 0);
    assert.equal(text.stdout, 'no differences\n', layer);
  }
  // A whole-disk filesystem (no table): the blocks layer compares volume 0 and finds the changed blocks.
  const b = vmdnOk(store, ['diff', imgA, imgB, '--layer', 'blocks']);
  assert.equal(b.volumes[0].index, 0);
  assert.ok(b.volumes[0].blocks.count > 0 && b.volumes[0].blocks.ranges.every((r: any) => r.end > r.start));
  const d = vmdnOk(store, ['diff', imgA, imgB, '--layer', 'disk']);
  assert.equal(d.bytes.method, 'bytes');
  assert.ok(d.bytes.count > 0 && d.bytes.ranges.every((r: any) => r.start % (1 << 20) === 0));
});

it('stored images: ls/inspect/cat/diff by NAME work like on the file; disk diff uses chunk digests', () => {
  vmdnOk(store, ['import', imgA, '--name', 'syn:a']);
  vmdnOk(store, ['import', imgB, '--name', 'syn:b']);
  const fromFile = vmdnOk(store, ['ls', imgA, '/', '-R', '--hash']);
  const fromStore = vmdnOk(store, ['ls', 'syn:a', '/', '-R', '--hash']);
  assert.deepEqual(fromStore.entries, fromFile.entries);
  assert.equal(fromFile.entries.length, 9); // 8 made + lost+found
  assert.equal(vmdnOk(store, ['inspect', 'syn:a']).filesystems[0].label, 'syn');
  const cat = spawnSync(process.execPath, [CLI, 'cat', 'syn:b', '/d/content.txt', '--store', store]);
  assert.equal(cat.status, 0);
  assert.equal(cat.stdout.toString(), 'version b\n');
  const byChunks = vmdnOk(store, ['diff', 'syn:a', 'syn:b', '--layer', 'disk']);
  const byBytes = vmdnOk(store, ['diff', imgA, imgB, '--layer', 'disk']);
  assert.equal(byChunks.bytes.method, 'chunks');
  assert.deepEqual(byChunks.bytes.ranges, byBytes.bytes.ranges);
  assert.deepEqual(vmdnOk(store, ['diff', 'syn:a', imgB, '--layer', 'files']).volumes, vmdnOk(store, ['diff', imgA, imgB, '--layer', 'files']).volumes);
  const missing = vmdn(store, ['ls', 'syn:nope']);
  assert.equal(missing.status, 4);
  assert.equal(missing.json.error.code, 'E_NOT_FOUND');
});

it('cat: raw bytes of a file; refuses a directory (E_USAGE) and a missing path (E_NOT_FOUND)', () => {
  const ok = spawnSync(process.execPath, [CLI, 'cat', imgA, '/d/link/../content.txt', '--store', store]);
  assert.equal(ok.status, 4, 'link target-a does not exist inside the image');
  const dir = vmdn(store, ['cat', imgA, '/d']);
  assert.equal(dir.status, 2);
  assert.equal(dir.json.error.code, 'E_USAGE');
  assert.match(dir.json.error.message, /is a directory/);
  const none = vmdn(store, ['cat', imgA, '/no/such']);
  assert.equal(none.status, 4);
  assert.equal(none.json.error.code, 'E_NOT_FOUND');
  const text = spawnSync(process.execPath, [CLI, 'cat', imgA, '/d', '--store', store], { encoding: 'utf8' });
  assert.equal(text.status, 2);
  assert.match(text.stderr, /E_USAGE.*is a directory/);
  assert.equal(text.stdout, '');
});

it('hostile names are listed as data: exact bytes in JSON, escaped on a terminal, nothing created on the host', () => {
  const tree = path.join(t.dir, 'hostile');
  py(`
import os, sys
r = sys.argv[1].encode()
os.mkdir(r)
for n in [b'-rf', b'a\\nb', b'\\xff\\xfe', b'esc\\x1b[31mred', b'back\\\\slash', b'..data', b' ']:
    os.mkdir(r + b'/' + n)
    open(r + b'/' + n + b'/f', 'wb').write(n)
`, tree);
  const img = path.join(t.dir, 'hostile.img');
  mkfs(tree, img);
  const cwd = path.join(t.dir, 'cwd');
  fs.mkdirSync(cwd);
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args, '--store', store], { cwd });
  const j = JSON.parse(run(['ls', img, '/', '-R', '--json', '--hash']).stdout.toString());
  const paths = j.entries.map((e: any) => (e.pathB64 ? Buffer.from(e.pathB64, 'base64') : Buffer.from(e.path)).toString('latin1'));
  for (const n of ['-rf', 'a\nb', '\xff\xfe', 'esc\x1b[31mred', 'back\\slash', '..data', ' ']) {
    assert.ok(paths.includes('/' + n), JSON.stringify(n));
    assert.ok(paths.includes('/' + n + '/f'), JSON.stringify(n));
  }
  const bad = j.entries.find((e: any) => e.pathB64 && e.type === 'dir');
  assert.equal(Buffer.from(bad.pathB64, 'base64').toString('hex'), '2ffffe');
  const text = run(['ls', img, '/', '-R']).stdout.toString();
  assert.equal(text.split('\n').length - 1, j.entries.length, 'one line per entry: newlines in names are escaped');
  assert.ok(!text.includes('\x1b'), 'no terminal escape sequence passes through');
  assert.match(text, /^\/a\\nb$/m);
  assert.match(text, /^\/\\xff\\xfe$/m);
  assert.match(text, /^\/back\\\\slash$/m);
  // cat by a name that is an option lookalike, after --
  const cat = spawnSync(process.execPath, [CLI, 'cat', '--store', store, img, '--', '/-rf/f'], { cwd });
  assert.equal(cat.status, 0, cat.stderr.toString());
  assert.equal(cat.stdout.toString(), '-rf');
  assert.deepEqual(fs.readdirSync(cwd), []);
});
