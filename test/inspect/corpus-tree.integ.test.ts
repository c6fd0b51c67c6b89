/**
 * The tree vmdn reads from each corpus image (`vmdn ls IMAGE / -R --hash
 * --json`, through qcow2 -> GPT -> ext4) equals the tree the image was made
 * from (NAME.tree, walked on the host with lstat): paths, types, modes,
 * owners, mtimes, sizes, content hashes, symlink targets, device numbers,
 * xattrs and hard-link groups.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI } from '../helpers/cli.js';
import { corpusDir, CORPUS_IMAGES } from '../helpers/corpus.js';
import { walkHost, hostXattrs, hasGetfattr, linkGroups, type HostEntry } from './host-tree.js';
import type { TreeEntry } from '../../src/inspect/tree.js';

export function lsJson(image: string, args: string[] = [], store = '/nonexistent-vmdn-store'): { entries: TreeEntry[] } {
  const r = spawnSync(process.execPath, [CLI, 'ls', image, '/', '-R', '--json', '--store', store, ...args], { maxBuffer: 1 << 30 });
  assert.equal(r.status, 0, `vmdn ls ${image}: ${r.stderr}`);
  return JSON.parse(r.stdout.toString('utf8'));
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
  for (const name of CORPUS_IMAGES) {
    const t0 = Date.now();
    const tree = path.join(c.dir, `${name}.tree`);
    const img = new Map(lsJson(path.join(c.dir, `${name}.qcow2`), ['--hash']).entries.map((e) => [keyOf(e), e]));
    const t1 = Date.now();
    const host = walkHost(tree, () => true);
    // mke2fs makes lost+found itself; it is not in the source tree.
    if (!host.has('/lost+found')) img.delete('/lost+found');
    assert.deepEqual([...img.keys()].filter((k) => !host.has(k)), [], `${name}: paths only in the image`);
    assert.deepEqual([...host.keys()].filter((k) => !img.has(k)), [], `${name}: paths only in the tree`);
    const bad: string[] = [];
    for (const [k, h] of host) {
      const a = norm(img.get(k)!), b = norm(h);
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
    const bytes = files.reduce((n, e) => n + e.size, 0);
    console.log(`${name}: ${host.size} entries, ${files.length} files, ${(bytes / 2 ** 20).toFixed(0)} MiB hashed; vmdn ls ${((t1 - t0) / 1000).toFixed(1)} s, host walk ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    assert.ok(fs.existsSync(tree));
  }
});
