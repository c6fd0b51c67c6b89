/**
 * The tree vmdn reads from each corpus image (`vmdn ls IMAGE / -R --hash
 * --json`, through qcow2 -> GPT -> ext4) equals the tree the image was made
 * from (NAME.tree, walked on the host with lstat): paths, types, modes,
 * owners, mtimes, sizes, content hashes, symlink targets, device numbers,
 * xattrs and hard-link groups.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { CLI } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';
import { corpusDir, CORPUS_IMAGES } from '../helpers/corpus.js';
import { walkHost, hostXattrs, hasGetfattr, linkGroups, type HostEntry } from './host-tree.js';
import type { TreeEntry } from '../../src/inspect/tree.js';

/** Start `vmdn ls -R --hash --json` writing to a file, so it runs while the host tree is walked. */
function startLs(image: string, out: string): () => Promise<{ entries: TreeEntry[] }> {
  const fd = fs.openSync(out, 'w');
  const child = spawn(process.execPath, [CLI, 'ls', image, '/', '-R', '--hash', '--json', '--store', '/nonexistent-vmdn-store'], { stdio: ['ignore', fd, 'pipe'] });
  fs.closeSync(fd);
  let err = '';
  child.stderr!.on('data', (b: Buffer) => { err += b; });
  const done = once(child, 'close');
  return async () => {
    const [code] = await done;
    assert.equal(code, 0, `vmdn ls ${image}: ${err}`);
    return JSON.parse(fs.readFileSync(out, 'utf8'));
  };
}

const keyOf = (e: TreeEntry): string => (e.pathB64 ? `b64:${e.pathB64}` : e.path);

/** The fields both sides carry, in comparable form. */
function norm(e: TreeEntry | HostEntry): Record<string, unknown> {
  const img = 'mtime' in e;
  return {
    type: e.type, perm: e.perm.toString(8), uid: e.uid, gid: e.gid,
    // mke2fs 1.47.0 -d copies st_mtime in seconds only (create_inode.c sets i_mtime, never the
    // _extra nanoseconds; the images read nsec 0), so mtimes are compared to the second.
    mtime: img ? (e as TreeEntry).mtime.sec : (e as HostEntry).mtimeSec,
    size: e.type === 'file' || e.type === 'symlink' ? e.size : undefined,
    sha256: e.sha256, target: e.target, rdev: e.rdev ? `${e.rdev.major}:${e.rdev.minor}` : undefined,
  };
}

it('corpus: vmdn ls -R --hash of every image equals its source tree (lstat, sha256, getfattr)', { timeout: 15 * 60_000 }, async (ctx) => {
  const c = corpusDir();
  if (!c.dir) { console.log(`skipped: ${c.reason}`); ctx.skip(c.reason); return; }
  // getfattr comes from Debian's "attr" package (scripts/ensure-debian-tools.mjs installs it).
  const xattrs = hasGetfattr();
  if (!xattrs) console.log('getfattr not found (apt-get install attr): xattrs not compared');
  const tmp = tmpDir('vmdn-tree-');
  ctx.after(() => tmp.cleanup());
  for (const name of CORPUS_IMAGES) {
    const t0 = Date.now();
    const tree = path.join(c.dir, `${name}.tree`);
    const ls = startLs(path.join(c.dir, `${name}.qcow2`), path.join(tmp.dir, `${name}.json`));
    // vmdn hashes every file's content; it runs in parallel with the host walk (one core each).
    // On the host, base/database/turn are hashed in full; academic* (~1.6 GiB each, a cold
    // tree read that took up to 5 minutes on a loaded machine) hash a fixed 1/8 sample of
    // files plus the researcher's data, and compare every file's size.
    const sampled = name.startsWith('academic');
    const sample = (k: string) => !sampled || k.startsWith('/home/') || crypto.createHash('sha256').update(k).digest()[0]! < 32;
    const host = await walkHost(tree, sample);
    const t1 = Date.now();
    const img = new Map<string, TreeEntry>((await ls()).entries.map((e) => [keyOf(e), e]));
    // mke2fs makes lost+found itself; it is not in the source tree.
    if (!host.has('/lost+found')) img.delete('/lost+found');
    assert.deepEqual([...img.keys()].filter((k) => !host.has(k)), [], `${name}: paths only in the image`);
    assert.deepEqual([...host.keys()].filter((k) => !img.has(k)), [], `${name}: paths only in the tree`);
    const bad: string[] = [];
    for (const [k, h] of host) {
      const a = norm(img.get(k)!), b = norm(h);
      if (!h.sha256) a.sha256 = undefined;
      if (JSON.stringify(a) !== JSON.stringify(b)) bad.push(`${k}: image ${JSON.stringify(a)} != tree ${JSON.stringify(b)}`);
      if (img.get(k)!.error) bad.push(`${k}: ${img.get(k)!.error}`);
    }
    assert.deepEqual(bad.slice(0, 20), [], `${name}: ${bad.length} entries differ`);
    if (xattrs) {
      const hx = hostXattrs(tree);
      const want = [...host.keys()].filter((k) => hx.get(k) && Object.keys(hx.get(k)!).length).map((k) => [k, hx.get(k)]);
      const got = [...img.values()].filter((e) => e.xattrs).map((e) => [keyOf(e), e.xattrs]);
      assert.deepEqual(got.sort(), want.sort(), `${name}: xattrs`);
    }
    assert.deepEqual(linkGroups([...img.values()].map((e) => ({ path: keyOf(e), type: e.type, ino: e.ino }))), linkGroups(host.values()), `${name}: hard-link groups`);
    const files = [...host.values()].filter((e) => e.type === 'file');
    const bytes = files.reduce((n, e) => n + (e.sha256 ? e.size : 0), 0);
    console.log(`${name}: ${host.size} entries, ${files.length} files, ${(bytes / 2 ** 20).toFixed(0)} MiB hashed; host walk ${((t1 - t0) / 1000).toFixed(1)} s, both done and compared ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.ok(fs.existsSync(tree));
  }
});
