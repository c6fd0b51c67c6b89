/**
 * Packages strategy, hermetic: real .debs built with dpkg-deb (xz, gzip,
 * zstd), a Debian archive served on 127.0.0.1, GPT disks whose ext4 root has
 * them installed (merged /usr, Conffiles, a multi-arch info name). Unmodified
 * package files become references; edited and corrupted ones stay the
 * image's own; a missing version falls back or fails; a second image fetches
 * nothing from the archive; a pull through an edge fetches shared packages
 * once; a tampered archive is refused.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, vmdn, vmdnOk } from '../helpers/cli.js';
import { loseObject } from '../helpers/object-bytes.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';
import { e2fsckPartition } from '../helpers/disk-checks.js';
import { buildDeb, buildImage, PART, sha256, vmdnAsync, vmdnAsyncOk, type BuiltDeb, type PkgSpec } from '../helpers/debs.js';
import { DebArchive } from '../helpers/deb-archive.js';
import { startProxy } from '../net/proxy.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { resolveImage } from '../../src/images/names.js';
import { loadTree, imageObjects, imageObjectRoles, type ObjectRole } from '../../src/model/objects.js';
import { pathKey, type TreeRecord } from '../../src/model/files-tree.js';
import { decodeDebIndex } from '../../src/strategy/packages/ingredients.js';
import { packageObjects } from '../../src/model/package-ref.js';
import type { Manifest } from '../../src/model/manifest.js';
import { Origin } from '../../src/net/server/origin.js';
import { Edge } from '../../src/net/server/edge.js';
import { pullImage } from '../../src/net/client/pull.js';
import type { Digest } from '../../src/store/digest.js';

const FAST = { retries: 2, backoffMs: 10, maxBackoffMs: 20 };
const text = (s: string) => Buffer.from(s);

const SPECS: PkgSpec[] = [
  {
    name: 'alpha', version: '1.0-1', arch: 'amd64', compress: 'xz',
    files: [
      { path: 'usr/bin/alpha', data: prng(1, 40_000), mode: 0o755 },
      { path: 'usr/share/doc/alpha/README', data: text('alpha: a test package\n'.repeat(20)) },
      { path: 'etc/alpha.conf', data: text('setting = 1\n') },
      { path: 'etc/alpha/extra.conf', data: text('extra = yes\n') },
      { path: 'usr/share/alpha/data.bin', data: prng(2, 1_300_000) }, // > 1 MiB: the .deb is two slices
      { path: 'usr/share/alpha/empty', data: Buffer.alloc(0) },
    ],
    conffiles: ['etc/alpha.conf', 'etc/alpha/extra.conf'],
  },
  {
    name: 'beta', version: '1:2.0-1', arch: 'amd64', compress: 'gzip',
    files: [
      { path: 'usr/bin/beta', data: prng(3, 3_000), mode: 0o4755 }, // setuid: kept through chown on export
      { path: 'usr/share/beta/table.dat', data: prng(4, 20_000) },
    ],
  },
  {
    name: 'libx1', version: '1.2-3', arch: 'amd64', compress: 'zstd', multiArchSame: true,
    files: [
      { path: 'lib/libx.so.1', data: prng(5, 30_000) }, // lands in usr/lib/ (lib -> usr/lib)
      { path: 'usr/share/doc/libx1/copyright', data: text('Copyright: nobody\n') },
    ],
  },
  { name: 'gamma', version: '0.5-1', arch: 'all', compress: 'xz', files: [{ path: 'usr/share/gamma/words.txt', data: text('gamma delta epsilon\n'.repeat(50)) }] },
];
/** An older gamma, listed in the main suite: never taken for 0.5-1. */
const GAMMA_OLD: PkgSpec = { name: 'gamma', version: '0.4-1', arch: 'all', compress: 'xz', files: [{ path: 'usr/share/gamma/words.txt', data: text('old words\n') }] };

/** Image A's package files that must be references (image paths), and the ones it changed. */
const A_PACKAGE = ['usr/bin/alpha', 'usr/share/doc/alpha/README', 'etc/alpha.conf', 'usr/share/alpha/data.bin', 'usr/bin/beta', 'usr/lib/libx.so.1', 'usr/share/doc/libx1/copyright', 'usr/share/gamma/words.txt'];
/** A package file with a second name outside the package (image hard link). */
const LINKED = 'usr/share/doc/alpha/README';
const A_MODIFIED = ['etc/alpha/extra.conf', 'usr/share/beta/table.dat'];
const B_PACKAGE = ['usr/bin/alpha', 'usr/share/doc/alpha/README', 'etc/alpha.conf', 'etc/alpha/extra.conf', 'usr/share/alpha/data.bin', 'usr/bin/beta', 'usr/share/beta/table.dat', 'usr/lib/libx.so.1', 'usr/share/doc/libx1/copyright'];

interface Loaded {
  manifest: Manifest;
  digest: Digest;
  records: TreeRecord[];
  objects: Set<Digest>;
}

async function load(storeDir: string, ref: string): Promise<Loaded> {
  const store = await LocalStore.open(storeDir);
  try {
    const { manifest, digest } = await resolveImage(store, parseImageRef(ref));
    assert.equal(manifest.filesystems?.length, 1);
    const records = await loadTree(manifest.filesystems![0]!, store);
    return { manifest, digest, records, objects: await imageObjects(manifest, store) };
  } finally {
    await store.close();
  }
}

const fromPackages = (records: TreeRecord[]) => records.filter((r) => r.pkg !== undefined).map((r) => pathKey(r.path)).sort();
const record = (records: TreeRecord[], p: string) => records.find((r) => pathKey(r.path) === p);
/** Regular files the matcher looked at: every file but hard links to an earlier one. */
const matchedFiles = (records: TreeRecord[]) => records.filter((r) => r.type === 'file' && r.link === undefined).length;

describe('packages strategy against a local Debian archive', { timeout: 180_000 }, () => {
  let t: ReturnType<typeof tmpDir>;
  let archive: DebArchive;
  const debs = new Map<string, BuiltDeb>();
  const diskA = () => path.join(t.dir, 'a.raw');
  const diskB = () => path.join(t.dir, 'b.raw');
  const store1 = () => path.join(t.dir, 'store1');
  const savedCache = process.env.VMDN_DEB_CACHE;

  before(async () => {
    delete process.env.VMDN_DEB_CACHE; // the CLI would share .debs across stores through it
    t = tmpDir('vmdn-packages-');
    const work = path.join(t.dir, 'debs');
    fs.mkdirSync(work);
    for (const s of SPECS) debs.set(s.name, buildDeb(s, work));
    archive = await DebArchive.start();
    for (const n of ['alpha', 'beta', 'libx1']) archive.add(debs.get(n)!);
    archive.add(buildDeb(GAMMA_OLD, work));
    // the current gamma only in -security, and that index only as Packages.xz
    archive.add(debs.get('gamma')!, 'testsuite-security');
    archive.xzOnly.add('testsuite-security');
    const get = (n: string, p: string) => SPECS.find((s) => s.name === n)!.files.find((f) => f.path === p)!.data;
    const corrupt = Buffer.from(get('beta', 'usr/share/beta/table.dat'));
    corrupt[777]! ^= 0x40;
    buildImage(diskA(), {
      packages: ['alpha', 'beta', 'libx1', 'gamma'].map((n) => debs.get(n)!),
      removed: [{ name: 'oldpkg', version: '9.9-9', arch: 'amd64' }],
      edits: [
        { path: 'etc/alpha/extra.conf', data: text('extra = no, edited by the admin\n') },
        { path: 'usr/share/beta/table.dat', data: corrupt },
      ],
      userFiles: [
        { path: 'root/notes.txt', data: text('remember the milk\n') },
        { path: 'srv/data/big.bin', data: prng(6, 200_000) },
        // a package file's bytes at a path no package claims: still the image's own
        { path: 'opt/alpha-copy', data: get('alpha', 'usr/bin/alpha'), mode: 0o755 },
        { path: 'home/u/.profile', data: text('export PATH\n') },
      ],
      // a user hard link, and one onto a package file (whichever path the walk meets first holds the content)
      hardLinks: [['srv/data/big.bin', 'srv/data/big-link.bin'], ['usr/share/doc/alpha/README', 'srv/readme-hard']],
      xattrs: [['srv/data/big.bin', 'user.note', '0x00ff10'], ['usr/bin/alpha', 'user.pkgnote', '0x01']],
    }, t.dir);
    buildImage(diskB(), {
      packages: ['alpha', 'beta', 'libx1'].map((n) => debs.get(n)!),
      userFiles: [{ path: 'srv/other.bin', data: prng(7, 150_000) }, { path: 'root/notes.txt', data: text('image B\n') }],
    }, t.dir);
  });

  after(async () => {
    if (savedCache !== undefined) process.env.VMDN_DEB_CACHE = savedCache;
    await archive?.close();
    t?.cleanup();
  });

  it('unmodified package files become references; an edited conffile and a corrupted file stay own files; export is file-identical', async () => {
    archive.reset();
    const r = await vmdnAsyncOk(store1(), ['import', diskA(), '--name', 'a:1', '--strategy', 'packages', '--apt-source', archive.url, '--keyring', archive.keyring]);
    assert.equal(r.packages?.length, 1, JSON.stringify(r));
    const p = r.packages[0];
    assert.equal(p.index, 1);
    assert.equal(p.installed, 4, 'oldpkg (config-files only) is not installed');
    assert.equal(p.used, 4);
    assert.deepEqual(p.missing, []);
    const debTotal = ['alpha', 'beta', 'libx1', 'gamma'].reduce((n, k) => n + debs.get(k)!.size, 0);
    assert.equal(p.mirrorBytes, debTotal);
    assert.ok(p.sources.some((s: string) => s.endsWith('testsuite-security/main')), p.sources.join(', '));
    assert.equal(p.files.modified, A_MODIFIED.length, JSON.stringify(p.files));
    assert.equal(p.files.fallback, 0);
    const sizeOf = (n: string, f: string) => SPECS.find((s) => s.name === n)!.files.find((x) => x.path === f)!.data.length;
    assert.equal(p.bytes.modified, Buffer.byteLength('extra = no, edited by the admin\n') + sizeOf('beta', 'usr/share/beta/table.dat'));
    assert.ok(r.notes.some((n: string) => n.startsWith(`volume 1: ${p.files.package} files from 4 of 4 installed packages; 2 modified package files`)), r.notes.join('; '));
    // each .deb fetched once, verified against its index
    const pool = archive.poolRequests();
    assert.equal(pool.length, 4, pool.join(', '));
    assert.ok(!pool.some((u) => u.includes('gamma_0.4-1')), 'an older version was downloaded');

    const a = await load(store1(), 'a:1');
    const linked = record(a.records, LINKED)!.link !== undefined;
    const expectA = A_PACKAGE.filter((x) => !(linked && x === LINKED));
    assert.deepEqual(fromPackages(a.records), [...expectA].sort());
    assert.equal(record(a.records, linked ? 'srv/readme-hard' : LINKED)!.link, undefined);
    assert.equal(record(a.records, 'usr/bin/beta')!.perm, 0o4755);
    assert.equal(Buffer.from(record(a.records, 'usr/bin/alpha')!.xattrs!.get('user.pkgnote')!).toString('hex'), '01');
    for (const m of A_MODIFIED) {
      const rec = record(a.records, m)!;
      assert.ok(rec && rec.pkg === undefined && (rec.chunks !== undefined || rec.streamOffset !== undefined), `${m} is not the image's own file`);
    }
    assert.equal(p.files.package, expectA.length, JSON.stringify(p.files));
    assert.equal(matchedFiles(a.records), p.files.package + p.files.modified + p.files.fallback + p.files.own);
    assert.equal(record(a.records, 'opt/alpha-copy')!.pkg, undefined);
    assert.equal(record(a.records, 'usr/share/alpha/empty')!.pkg, undefined, 'empty files are never references');
    assert.equal(record(a.records, 'lib')!.type, 'symlink');
    const pkgs = a.manifest.filesystems![0]!.packages!;
    assert.deepEqual(pkgs.map((x) => `${x.name} ${x.version} ${x.arch}`).sort(), ['alpha 1.0-1 amd64', 'beta 1:2.0-1 amd64', 'gamma 0.5-1 all', 'libx1 1.2-3 amd64']);
    for (const x of pkgs) {
      const d = debs.get(x.name)!;
      assert.equal(x.sha256, d.sha256);
      assert.equal(x.size, d.size);
      // the data member as dpkg-deb unpacks it, every byte covered by chunks or zero
      const deb = path.join(t.dir, `${x.name}.deb`);
      fs.writeFileSync(deb, d.bytes);
      const tarBytes = spawnSync('dpkg-deb', ['--fsys-tarfile', deb], { maxBuffer: 64 << 20 }).stdout;
      assert.equal(x.tarSize, tarBytes.length);
      assert.ok(x.tar.every(([o, l]) => o + l <= x.tarSize));
    }
    // 1.3 MB of data.bin: the tar is cut into several content-defined chunks
    assert.ok(pkgs.find((x) => x.name === 'alpha')!.tar.length > 5);
    // every reference points at the package that has the file, with its size
    for (const rec of a.records.filter((x) => x.pkg !== undefined)) {
      const ref = pkgs[rec.pkg!]!;
      const pkgPath = pathKey(rec.path).replace(/^usr\/lib\//, ref.name === 'libx1' ? 'lib/' : 'usr/lib/');
      const f = SPECS.find((s) => s.name === ref.name)!.files.find((x) => x.path === pkgPath);
      assert.ok(f, `${pathKey(rec.path)} refers to ${ref.name}, which does not ship it`);
      assert.equal(rec.size, f.data.length);
    }
    // the index object lists the .deb's regular files with their hashes
    const store = await LocalStore.open(store1());
    try {
      const libx = pkgs.find((x) => x.name === 'libx1')!;
      const idx = decodeDebIndex(await store.get(libx.index));
      assert.deepEqual([...idx.keys()].sort(), ['lib/libx.so.1', 'usr/share/doc/libx1/copyright']);
      assert.equal(idx.get('lib/libx.so.1')!.sha256, sha256(SPECS[2]!.files[0]!.data));
    } finally {
      await store.close();
    }

    const out = path.join(t.dir, 'a-rebuilt.raw');
    vmdnOk(store1(), ['export', 'a:1', out]);
    const d = vmdnOk(store1(), ['diff', diskA(), out, '--layer', 'files']);
    assert.equal(d.identical, true, JSON.stringify(d).slice(0, 2000));
    const fsck = e2fsckPartition(out, PART.start, PART.size, t.dir);
    assert.ok(fsck.clean, fsck.out);
    fs.rmSync(out);
  });

  it('verify reports a lost chunk, tree, times, stream, file-content or package object of the image, and exits 5', async () => {
    const { manifest, digest } = await load(store1(), 'a:1');
    const store = await LocalStore.open(store1());
    let roles: Map<Digest, ObjectRole>;
    try {
      roles = await imageObjectRoles(manifest, store);
    } finally {
      await store.close();
    }
    const kinds: ObjectRole[] = ['chunk', 'tree', 'times', 'stream', 'file-content', 'package'];
    for (const kind of kinds) {
      const lost = [...roles].find(([, r]) => r === kind)?.[0];
      assert.ok(lost, `image a:1 has no ${kind} object to lose`);
      const copy = path.join(t.dir, `verify-${kind}`);
      fs.cpSync(store1(), copy, { recursive: true });
      const s = await LocalStore.open(copy);
      await loseObject(s, lost);
      await s.close();
      const r = vmdn(copy, ['verify', '--json']);
      assert.equal(r.status, 5, `${kind}: ${r.stderr}`);
      const out = JSON.parse(r.stdout);
      const missing = out.problems.filter((p: { problem: string }) => p.problem === 'missing');
      assert.deepEqual([...new Set(missing.map((p: { digest: string }) => p.digest))], [lost], `${kind}: ${JSON.stringify(missing)}`);
      const forImage = missing.filter((p: { image?: string }) => p.image === 'a:1');
      assert.equal(forImage.length, 1, JSON.stringify(missing));
      assert.match(forImage[0].detail, new RegExp(`^${kind} object`));
      fs.rmSync(copy, { recursive: true });
    }
    assert.ok(digest);
  });

  it('a stored image reads its package files without a rebuild (cat, diff) and then exits', () => {
    // a bounded wait: the CLI must finish, not hang on a dpkg-deb left half-read
    const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args, '--store', store1()], { maxBuffer: 64 << 20, timeout: 15_000, killSignal: 'SIGKILL' });
    // libx.so.1 is the first member of its package; usr/bin/alpha has 1.3 MB of data.bin after it in alpha's
    for (const [p, data] of [['/lib/libx.so.1', SPECS[2]!.files[0]!.data], ['/usr/bin/alpha', SPECS[0]!.files[0]!.data]] as const) {
      const cat = run(['cat', 'a:1', p]);
      assert.ok(cat.stdout.equals(data), `vmdn cat a:1 ${p}: ${cat.stdout.length} bytes`);
      assert.equal(cat.status, 0, `vmdn cat a:1 ${p} did not exit (signal ${cat.signal}): ${cat.stderr}`);
    }
    const stored = run(['diff', 'a:1', diskA(), '--layer', 'files', '--json']);
    assert.equal(stored.status, 0, `vmdn diff a:1 ${diskA()} did not exit (signal ${stored.signal}): ${stored.stderr}`);
    const d = JSON.parse(stored.stdout.toString());
    assert.equal(d.identical, true, JSON.stringify(d).slice(0, 2000));
  });

  it('a version missing from the archive: its files are stored with the image, or --fallback error fails naming it', async () => {
    archive.reset();
    archive.omit('gamma', '0.5-1');
    const store = path.join(t.dir, 'store-missing');
    const r = await vmdnAsyncOk(store, ['import', diskA(), '--name', 'a:missing', '--strategy', 'packages', '--apt-source', archive.url, '--keyring', archive.keyring]);
    const p = r.packages[0];
    assert.deepEqual(p.missing, [{ name: 'gamma', version: '0.5-1', arch: 'all' }]);
    assert.equal(p.used, 3);
    assert.equal(p.files.fallback, 1, JSON.stringify(p.files));
    const linked = (await load(store1(), 'a:1')).records.find((x) => pathKey(x.path) === LINKED)!.link !== undefined;
    assert.equal(p.files.package, A_PACKAGE.length - 1 - (linked ? 1 : 0));
    assert.equal(p.files.modified, A_MODIFIED.length);
    assert.ok(r.notes.includes('volume 1: package gamma 0.5-1 (all) is not on the mirror: its files are stored with the image'), r.notes.join('; '));
    assert.ok(!archive.poolRequests().some((u) => u.includes('gamma')), archive.poolRequests().join(', '));
    const a = await load(store, 'a:missing');
    assert.equal(record(a.records, 'usr/share/gamma/words.txt')!.pkg, undefined);
    assert.deepEqual(fromPackages(a.records), A_PACKAGE.filter((x) => !x.includes('gamma') && !(linked && x === LINKED)).sort());
    assert.ok(!a.manifest.filesystems![0]!.packages!.some((x) => x.name === 'gamma'));
    const out = path.join(t.dir, 'a-missing.raw');
    vmdnOk(store, ['export', 'a:missing', out]);
    const d = vmdnOk(store, ['diff', diskA(), out, '--layer', 'files']);
    assert.equal(d.identical, true, JSON.stringify(d).slice(0, 2000));
    fs.rmSync(out);

    const strict = await vmdnAsync(store, ['import', diskA(), '--name', 'a:strict', '--strategy', 'packages', '--apt-source', archive.url, '--keyring', archive.keyring, '--fallback', 'error']);
    assert.equal(strict.status, 4, strict.stdout + strict.stderr);
    const err = strict.json?.error;
    assert.equal(err?.code, 'E_NOT_FOUND', strict.stdout);
    assert.match(err.message, /package gamma 0\.5-1 \(all\) is not on the mirror/);
    assert.deepEqual(vmdnOk(store, ['images']).images.map((i: { ref: string }) => i.ref), ['a:missing']);
  });

  it('a second image sharing packages downloads nothing from the archive', async () => {
    archive.reset();
    const r = await vmdnAsyncOk(store1(), ['import', diskB(), '--name', 'b:1', '--strategy', 'packages', '--apt-source', archive.url, '--keyring', archive.keyring]);
    const p = r.packages[0];
    assert.equal(p.mirrorBytes, 0);
    assert.deepEqual(archive.poolRequests(), []);
    assert.equal(p.installed, 3);
    assert.equal(p.used, 3);
    assert.equal(p.files.package, B_PACKAGE.length, JSON.stringify(p.files));
    assert.equal(p.files.modified, 0);
    const [a, b] = [await load(store1(), 'a:1'), await load(store1(), 'b:1')];
    assert.deepEqual(fromPackages(b.records), [...B_PACKAGE].sort());
    // the same package objects in both manifests
    const objs = (m: Manifest) => new Map(m.filesystems![0]!.packages!.map((x) => [x.name, packageObjects(x).join()]));
    const oa = objs(a.manifest), ob = objs(b.manifest);
    for (const n of ['alpha', 'beta', 'libx1']) assert.equal(ob.get(n), oa.get(n), n);
    const out = path.join(t.dir, 'b-rebuilt.raw');
    vmdnOk(store1(), ['export', 'b:1', out]);
    assert.equal(vmdnOk(store1(), ['diff', diskB(), out, '--layer', 'files']).identical, true);
    fs.rmSync(out);
  });

  it('--deb-cache: a second store takes verified .debs from it; a damaged cached copy is fetched again', async () => {
    archive.reset();
    const cacheDir = path.join(t.dir, 'deb-cache');
    const args = (s: string, name: string): [string, string[]] => [s, ['import', diskB(), '--name', name, '--strategy', 'packages', '--apt-source', archive.url, '--keyring', archive.keyring, '--deb-cache', cacheDir]];
    const first = await vmdnAsyncOk(...args(path.join(t.dir, 'dc1'), 'b:dc1'));
    assert.equal(first.packages[0].mirrorBytes, ['alpha', 'beta', 'libx1'].reduce((n, k) => n + debs.get(k)!.size, 0));
    assert.equal(archive.poolRequests().length, 3);
    archive.reset();
    const second = await vmdnAsyncOk(...args(path.join(t.dir, 'dc2'), 'b:dc2'));
    assert.equal(second.packages[0].mirrorBytes, 0);
    assert.deepEqual(archive.poolRequests(), []);
    assert.equal(second.manifest, first.manifest, 'the same image gives the same manifest in either store');
    // a cached copy that no longer matches its SHA-256 is not used
    const cached = path.join(cacheDir, `${debs.get('beta')!.sha256}.deb`);
    assert.ok(fs.existsSync(cached), fs.readdirSync(cacheDir).join(', '));
    const b = fs.readFileSync(cached);
    b[100]! ^= 0xff;
    fs.writeFileSync(cached, b);
    archive.reset();
    const third = await vmdnAsyncOk(...args(path.join(t.dir, 'dc3'), 'b:dc3'));
    assert.deepEqual(archive.poolRequests().map((u) => path.basename(u)), [path.basename(debs.get('beta')!.filename)]);
    assert.equal(third.manifest, first.manifest);
    assert.equal(sha256(fs.readFileSync(cached)), debs.get('beta')!.sha256, 'the damaged copy was replaced');
  });

  it('pull through an edge: the second image fetches none of the package objects the first brought', async () => {
    const a = await load(store1(), 'a:1');
    const b = await load(store1(), 'b:1');
    const shared = new Set<Digest>();
    for (const x of b.manifest.filesystems![0]!.packages!) for (const d of packageObjects(x)) if (a.objects.has(d)) shared.add(d);
    assert.ok(shared.size >= 5, `${shared.size} shared package objects`);
    const onlyB = [...b.objects].filter((d) => !a.objects.has(d));
    const origin = new Origin(await LocalStore.open(store1()), {});
    await origin.listen();
    const edge = await Edge.open({ upstream: origin.url, cacheDir: path.join(t.dir, 'edge'), maxSize: 1 << 30, http: FAST });
    await edge.listen();
    const fetched: Digest[] = [];
    const tap = await startProxy(edge.url, { transform: (d, body) => (fetched.push(d as Digest), body) });
    const cache = await LocalStore.open(path.join(t.dir, 'client'));
    try {
      const outA = path.join(t.dir, 'pulled-a.raw');
      const ra = await pullImage({ url: tap.url, ref: parseImageRef('a:1'), out: outA, cache, http: FAST });
      assert.equal(ra.objects.total, a.objects.size);
      assert.ok(a.objects.size > 0 && [...a.objects].every((d) => fetched.includes(d)), 'pull A fetched every object of A');
      const statsA = await (await fetch(`${edge.url}/stats`)).json();
      fetched.length = 0;
      const outB = path.join(t.dir, 'pulled-b.raw');
      const rb = await pullImage({ url: tap.url, ref: parseImageRef('b:1'), out: outB, cache, http: FAST });
      const statsB = await (await fetch(`${edge.url}/stats`)).json();
      assert.equal(rb.objects.total, b.objects.size);
      assert.deepEqual([...shared].filter((d) => fetched.includes(d)), [], 'shared package objects fetched again');
      assert.deepEqual(fetched.filter((d) => d !== b.digest).sort(), [...onlyB].sort(), 'pull B fetched exactly what A lacks (and its manifest)');
      assert.ok(rb.objects.downloaded <= onlyB.length, JSON.stringify(rb.objects));
      assert.equal(rb.objects.cached + rb.objects.downloaded, b.objects.size);
      // the edge, too, went upstream only for B's own objects
      assert.equal((statsB.objectsFromUpstream as number) - (statsA.objectsFromUpstream as number), onlyB.length + 1, JSON.stringify(statsB));
      assert.equal((statsB.objectRequests as number) - (statsA.objectRequests as number), fetched.length);
      for (const [src, out] of [[diskA(), outA], [diskB(), outB]] as const) {
        const d = vmdnOk(path.join(t.dir, 'client'), ['diff', src, out, '--layer', 'files']);
        assert.equal(d.identical, true, `${out}: ${JSON.stringify(d).slice(0, 2000)}`);
      }
    } finally {
      await cache.close();
      await tap.close();
      await edge.close();
      await origin.close();
      await origin.store.close();
    }
  });

  it('vmdn warm --packages-only seeds a cold edge with the packages: a pull then takes only the image\'s own objects from upstream', async () => {
    const a = await load(store1(), 'a:1');
    const pkgObjs = new Set(a.manifest.filesystems![0]!.packages!.flatMap(packageObjects));
    const origin = new Origin(await LocalStore.open(store1()), {});
    await origin.listen();
    const edge = await Edge.open({ upstream: origin.url, cacheDir: path.join(t.dir, 'warm-edge'), maxSize: 1 << 30, http: FAST });
    await edge.listen();
    const cache = await LocalStore.open(path.join(t.dir, 'warm-client'));
    try {
      const w = await vmdnAsyncOk(path.join(t.dir, 'unused-store'), ['warm', edge.url, 'a:1', '--packages-only']);
      assert.equal(w.objects, pkgObjs.size);
      assert.equal(w.packages, a.manifest.filesystems![0]!.packages!.length);
      const warmed = await (await fetch(`${edge.url}/stats`)).json();
      assert.equal(warmed.objectsFromUpstream, pkgObjs.size + 1, `the packages and the manifest: ${JSON.stringify(warmed)}`);
      await pullImage({ url: edge.url, ref: parseImageRef('a:1'), out: path.join(t.dir, 'warm-a.raw'), cache, http: FAST });
      const after = await (await fetch(`${edge.url}/stats`)).json();
      const own = [...a.objects].filter((d) => !pkgObjs.has(d)).length;
      assert.equal(after.objectsFromUpstream - warmed.objectsFromUpstream, own, 'the pull brought only the image\'s own objects from upstream');
    } finally {
      await cache.close();
      await edge.close();
      await origin.close();
      await origin.store.close();
    }
  });

  it('rm + gc keep the packages another image uses; a re-import fetches only what gc dropped', async () => {
    vmdnOk(store1(), ['rm', 'a:1']);
    const gc = vmdnOk(store1(), ['gc']);
    assert.ok(gc.removedObjects > 0, JSON.stringify(gc));
    const v = vmdn(store1(), ['verify']);
    assert.equal(v.status, 0, v.stdout.slice(0, 2000));
    const out = path.join(t.dir, 'b-after-gc.raw');
    vmdnOk(store1(), ['export', 'b:1', out]);
    assert.equal(vmdnOk(store1(), ['diff', diskB(), out, '--layer', 'files']).identical, true);
    fs.rmSync(out);
    // gamma was only A's: gone with it, so it is fetched again; the rest is still in the store
    archive.reset();
    const r = await vmdnAsyncOk(store1(), ['import', diskA(), '--name', 'a:2', '--strategy', 'packages', '--apt-source', archive.url, '--keyring', archive.keyring]);
    assert.equal(r.packages[0].mirrorBytes, debs.get('gamma')!.size);
    assert.deepEqual(archive.poolRequests().map((u) => path.basename(u)), [path.basename(debs.get('gamma')!.filename)]);
    const again = path.join(t.dir, 'a2.raw');
    vmdnOk(store1(), ['export', 'a:2', again]);
    assert.equal(vmdnOk(store1(), ['diff', diskA(), again, '--layer', 'files']).identical, true);
    fs.rmSync(again);
  });

  it('a .deb that does not match its index SHA-256 fails the import and adds nothing', async () => {
    archive.reset();
    archive.tamper('alpha', '1.0-1');
    const store = path.join(t.dir, 'store-tampered');
    const r = await vmdnAsync(store, ['import', diskA(), '--name', 'a:bad', '--strategy', 'packages', '--apt-source', archive.url, '--keyring', archive.keyring]);
    assert.equal(r.status, 5, r.stdout + r.stderr);
    assert.equal(r.json?.error?.code, 'E_CORRUPT_OBJECT', r.stdout);
    assert.match(r.json.error.message, /alpha_1\.0-1_amd64\.deb/);
    assert.match(r.json.error.message, /SHA-256/);
    assert.deepEqual(vmdnOk(store, ['images']).images, []);
    const s = await LocalStore.open(store);
    try {
      assert.equal(s.index.totals().objects, 0, 'objects left behind by the failed import');
    } finally {
      await s.close();
    }
  });
});
