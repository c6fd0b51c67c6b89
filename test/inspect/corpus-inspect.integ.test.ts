/**
 * inspect and diff on the corpus, checked against the real tools: the
 * package list against dpkg-query on the source tree, partitions against
 * sfdisk, filesystem UUIDs and labels against blkid (and the UUID the corpus
 * script passed to mke2fs -U), diffs against what the corpus script did.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { vmdnOk } from '../helpers/cli.js';
import { corpusDir, CORPUS_IMAGES } from '../helpers/corpus.js';
import { sfdiskJson, nodeIndex } from '../helpers/sfdisk.js';

const NO_STORE = '/nonexistent-vmdn-store';
const corpus = (ctx: { skip: (r?: string) => void }): string | undefined => {
  const c = corpusDir();
  if (!c.dir) { console.log(`skipped: ${c.reason}`); ctx.skip(c.reason); }
  return c.dir;
};

/** blkid's view of the filesystem at a byte offset of a raw image. */
function blkid(raw: string, offset: number): Record<string, string> {
  const out = execFileSync('blkid', ['-p', '-O', String(offset), '-o', 'export', raw], { encoding: 'utf8' });
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** Installed packages per dpkg-query on the tree ("name version arch"); config-files-only entries are not installed. */
function dpkgQuery(tree: string): string[] {
  const out = execFileSync('dpkg-query', ['-W', `--admindir=${tree}/var/lib/dpkg`, '-f', '${db:Status-Status} ${Package} ${Version} ${Architecture}\n'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return out.split('\n').filter((l) => l.startsWith('installed ')).map((l) => l.slice('installed '.length)).sort();
}

it('corpus: vmdn inspect matches dpkg-query, os-release, sfdisk and blkid', { timeout: 5 * 60_000 }, (ctx) => {
  const dir = corpus(ctx);
  if (!dir) return;
  for (const name of CORPUS_IMAGES) {
    const raw = path.join(dir, `${name}.raw`);
    const r = vmdnOk(NO_STORE, ['inspect', path.join(dir, `${name}.qcow2`)]);
    assert.equal(r.scheme, 'gpt');
    const sf = sfdiskJson(raw);
    assert.equal(r.diskId, sf.id);
    assert.deepEqual(r.partitions.map((p: any) => [p.index, p.start, p.size, p.type, p.name, p.uuid]),
      sf.partitions!.map((p) => [nodeIndex(p.node), p.start, p.size, p.type, p.name, p.uuid]).sort((a, b) => (a[0] as number) - (b[0] as number)));
    const fsBy = Object.fromEntries(r.filesystems.map((f: any) => [f.index, f]));
    const root = blkid(raw, r.partitions[0].offset), efi = blkid(raw, r.partitions[2].offset);
    // The corpus script formats root with mke2fs -U md5(name) and the ESP with mkfs.vfat -i 1234ABCD.
    const md5 = crypto.createHash('md5').update(name).digest('hex');
    const uuid = `${md5.slice(0, 8)}-${md5.slice(8, 12)}-${md5.slice(12, 16)}-${md5.slice(16, 20)}-${md5.slice(20, 32)}`;
    assert.deepEqual([fsBy[1].kind, fsBy[1].uuid, fsBy[1].label], [root.TYPE, root.UUID, root.LABEL]);
    assert.deepEqual([fsBy[1].kind, fsBy[1].uuid, fsBy[1].label], ['ext4', uuid, 'root']);
    assert.deepEqual([fsBy[3].kind, fsBy[3].uuid, fsBy[3].label], [efi.TYPE, efi.UUID, efi.LABEL]);
    assert.deepEqual([fsBy[3].uuid, fsBy[3].label], ['1234-ABCD', 'EFI']);
    assert.ok(fsBy[1].usedBytes > 100 << 20 && fsBy[1].usedBytes < fsBy[1].totalBytes);
    assert.equal(fsBy[2].kind, 'unknown'); // the BIOS boot partition holds boot code, no filesystem
    assert.equal(r.os.partition, 1);
    assert.equal(r.os.prettyName, 'Debian GNU/Linux 12 (bookworm)');
    assert.deepEqual([r.os.id, r.os.versionId, r.os.hostname, r.os.packageManager], ['debian', '12', 'vmdn-corpus', 'dpkg']);
    const want = dpkgQuery(path.join(dir, `${name}.tree`));
    assert.deepEqual(r.os.packages.map((p: any) => `${p.name} ${p.version} ${p.arch}`).sort(), want, `${name}: packages`);
    assert.equal(r.os.packageCount, want.length);
  }
});

it('corpus: diff base turn --layer packages shows coturn and its dependencies added, nothing removed', (ctx) => {
  const dir = corpus(ctx);
  if (!dir) return;
  const r = vmdnOk(NO_STORE, ['diff', path.join(dir, 'base.qcow2'), path.join(dir, 'turn.qcow2'), '--layer', 'packages']);
  const added = r.packages.added.map((p: any) => p.name);
  const base = new Set(dpkgQuery(path.join(dir, 'base.tree'))), turn = dpkgQuery(path.join(dir, 'turn.tree'));
  assert.ok(added.includes('coturn'));
  assert.deepEqual(added.sort(), turn.filter((l) => !base.has(l)).map((l) => l.split(' ')[0]).sort());
  assert.deepEqual([r.packages.removed, r.packages.downgraded], [[], []]);
});

it('corpus: diff base turn --layer files: coturn files and /etc/turnserver.conf added, all owned by dpkg', { timeout: 10 * 60_000 }, (ctx) => {
  const dir = corpus(ctx);
  if (!dir) return;
  const r = vmdnOk(NO_STORE, ['diff', path.join(dir, 'base.qcow2'), path.join(dir, 'turn.qcow2'), '--layer', 'files']);
  const root = r.volumes.find((v: any) => v.index === 1).files;
  const added = new Set(root.added.map((e: any) => e.path));
  for (const p of ['/etc/turnserver.conf', '/usr/bin/turnserver']) assert.ok(added.has(p), p);
  assert.deepEqual(root.removed, []);
  // Everything added under /usr is a path some package in the turn image lists (info/*.list on the
  // tree; lists still say /lib, /bin, /sbin, which merged-/usr makes /usr/...), or an alternatives link.
  const info = path.join(dir, 'turn.tree/var/lib/dpkg/info');
  const merged = (p: string) => p.replace(/^\/(lib|lib64|bin|sbin)\//, '/usr/$1/');
  const owned = new Set(fs.readdirSync(info).filter((n) => n.endsWith('.list')).flatMap((n) => fs.readFileSync(path.join(info, n), 'utf8').split('\n').map(merged)));
  const alternative = (e: any) => e.type === 'symlink' && fs.readlinkSync(path.join(dir, 'turn.tree', e.path)).startsWith('/etc/alternatives/');
  assert.deepEqual(root.added.filter((e: any) => e.path.startsWith('/usr/') && !owned.has(e.path) && !alternative(e)).map((e: any) => e.path), []);
  // dpkg rewrote its own database, and adduser the account files, nothing under /usr/bin changed in place.
  const changed = new Map(root.changed.map((c: any) => [c.path, c.what]));
  assert.ok((changed.get('/var/lib/dpkg/status') as string[]).includes('content'));
  assert.deepEqual([...changed].filter(([p, w]) => (p as string).startsWith('/usr/bin/') && (w as string[]).includes('content')), []);
  // The ESP is the same in both.
  assert.deepEqual(r.volumes.find((v: any) => v.index === 3).files, { added: [], removed: [], changed: [], errors: [] });
});

it('corpus: base.qcow2 against base.raw has no differences on any layer', { timeout: 10 * 60_000 }, (ctx) => {
  const dir = corpus(ctx);
  if (!dir) return;
  for (const layer of ['packages', 'files', 'blocks', 'disk']) {
    const r = vmdnOk(NO_STORE, ['diff', path.join(dir, 'base.qcow2'), path.join(dir, 'base.raw'), '--layer', layer]);
    assert.equal(r.identical, true, `${layer}: ${JSON.stringify(r).slice(0, 500)}`);
  }
});
