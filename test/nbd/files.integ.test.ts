/**
 * `vmdn nbd` of files-strategy images: the client reads exactly the bytes
 * `vmdn export` writes (qemu-img compare), from the local store and lazily
 * `--from` a real `vmdn serve` origin, where the metadata build and a read
 * fetch only what they need (big files' content stays on the origin until a
 * read touches it) and the fill still ends with every object in the cache.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { tmpDir } from '../helpers/tmp.js';
import { ext4Disk } from '../helpers/ext4-disk.js';
import { prng } from '../helpers/images.js';
import { qemuCompare, vmdn, vmdnOk, vmdnStart, waitFor } from '../helpers/cli.js';
import { corpusDir } from '../helpers/corpus.js';
import { startServe, type Served } from '../helpers/serve.js';
import { hasQemuTools } from './raw-client.js';
import { countObjects } from '../helpers/store-objects.js';
import { buildDeb, buildImage, vmdnAsyncOk } from '../helpers/debs.js';
import { DebArchive } from '../helpers/deb-archive.js';

const skip = hasQemuTools() ? false : 'qemu-img/qemu-io not installed (scripts/ensure-debian-tools.mjs installs them)';
const MiB = 2 ** 20;

/** A tree with big and small files, a sparse file, symlinks and hard links. */
function makeTree(dir: string): Buffer {
  fs.mkdirSync(path.join(dir, 'etc', 'deep', 'er'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'var', 'lib'), { recursive: true });
  const big = prng(21, 5 * MiB);
  fs.writeFileSync(path.join(dir, 'big.bin'), big);
  fs.writeFileSync(path.join(dir, 'var', 'lib', 'mid.bin'), prng(22, 300 * 1024 + 123));
  fs.writeFileSync(path.join(dir, 'var', 'lib', 'edge.bin'), prng(23, 8 * 1024));
  // holes between data, and a tail hole
  const sparse = path.join(dir, 'var', 'sparse.img');
  const fd = fs.openSync(sparse, 'w');
  fs.writeSync(fd, prng(24, 200 * 1024), 0, 200 * 1024, 3 * MiB);
  fs.writeSync(fd, prng(25, 5000), 0, 5000, 7 * MiB + 17);
  fs.closeSync(fd);
  fs.truncateSync(sparse, 9 * MiB);
  for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(dir, 'etc', 'deep', `f${i}.conf`), `setting ${i} = ${'x'.repeat(i * 37)}\n`);
  fs.writeFileSync(path.join(dir, 'etc', 'deep', 'er', 'zero.bin'), Buffer.alloc(64 * 1024));
  fs.symlinkSync('../big.bin', path.join(dir, 'etc', 'short-link'));
  fs.symlinkSync('/' + 'long/'.repeat(40) + 'target', path.join(dir, 'etc', 'long-link'));
  fs.linkSync(path.join(dir, 'big.bin'), path.join(dir, 'var', 'big-hardlink'));
  fs.linkSync(path.join(dir, 'etc', 'deep', 'f3.conf'), path.join(dir, 'etc', 'f3-hardlink'));
  return big;
}

async function objectRequests(url: string): Promise<number> {
  return ((await (await fetch(`${url}/stats`)).json()) as { objectRequests: number }).objectRequests;
}

function qemuIo(uri: string, cmds: string[]): { status: number; out: string } {
  const r = spawnSync('qemu-io', ['-r', '-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), uri], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status ?? -1, out: r.stdout + r.stderr };
}

/** `vmdn nbd ...`: the listening document (a rebuild may take a while), then the counters lines with --from. */
async function startNbd(store: string, args: string[]) {
  const run = vmdnStart(store, ['nbd', ...args]);
  let exited = false;
  run.done.then(() => (exited = true));
  await waitFor(() => exited || /^\}$/m.test(run.output().stdout), 120_000, 'vmdn nbd to listen');
  if (exited) throw new Error(`vmdn nbd exited: ${run.output().stderr}`);
  const out = run.output().stdout;
  const info = JSON.parse(out.slice(0, out.indexOf('\n}\n') + 2));
  const last = () => run.output().stdout.split('\n').filter((l) => l.startsWith('{"event":"counters"')).map((l) => JSON.parse(l)).at(-1) ?? {};
  return { ...run, info, last, stop: () => (run.child.kill('SIGTERM'), run.done) };
}

describe('vmdn nbd of a files-strategy image', { skip }, () => {
  const t = tmpDir('vmdn-nbd-files-');
  const store = path.join(t.dir, 'store');
  const disk = path.join(t.dir, 'disk.raw');
  const exported = path.join(t.dir, 'exported.raw');
  let big: Buffer;
  let origin: Served | undefined;

  before(() => {
    const tree = path.join(t.dir, 'tree');
    big = makeTree(tree);
    ext4Disk(tree, disk, { sizeMiB: 48 });
    vmdnOk(store, ['import', disk, '--name', 'files:1', '--strategy', 'files']);
    vmdnOk(store, ['export', 'files:1', exported]);
  });
  after(async () => {
    await origin?.stop();
    t.cleanup();
  });

  it('export is deterministic: a second export writes the same bytes', () => {
    const again = path.join(t.dir, 'again.raw');
    vmdnOk(store, ['export', 'files:1', again]);
    assert.ok(fs.readFileSync(again).equals(fs.readFileSync(exported)));
    fs.rmSync(again);
  });

  it('serves exactly what vmdn export writes, and removes its work files on exit', async () => {
    const sock = path.join(t.dir, 'local.sock');
    const s = await startNbd(store, ['files:1', '--socket', sock, '--readonly']);
    const work = fs.readdirSync('/tmp').filter((n) => n.startsWith(`vmdn-nbd-${s.child.pid}-`));
    try {
      assert.ok(s.info.rebuilt && s.info.rebuilt.directFiles >= 3, JSON.stringify(s.info));
      assert.equal(work.length, 1, 'one work directory, named for the server');
      const c = qemuCompare(exported, `nbd+unix:///files:1?socket=${sock}`);
      assert.ok(c.identical, c.out);
      // a read across a big file's blocks, in pieces that do not align with blocks
      const at = fs.readFileSync(exported).indexOf(big.subarray(MiB, MiB + 4096));
      assert.ok(at > 0);
      const r = qemuIo(`nbd+unix:///files:1?socket=${sock}`, ['read -v ' + (at - 1000) + ' 3000']);
      assert.equal(r.status, 0, r.out);
    } finally {
      await s.stop();
    }
    assert.ok(!fs.existsSync(path.join('/tmp', work[0]!)), 'the work directory is removed on exit');
  });

  it('--from an origin, --no-fill: the metadata build and a read fetch only what they need', { timeout: 180_000 }, async () => {
    origin = await startServe(store);
    const total = await countObjects(store);
    const cache = path.join(t.dir, 'cache-nofill');
    const sock = path.join(t.dir, 'nofill.sock');
    const before = await objectRequests(origin.url);
    const s = await startNbd(cache, ['files:1', '--from', origin.url, '--cache', cache, '--socket', sock, '--no-fill']);
    try {
      const uri = `nbd+unix:///files:1?socket=${sock}`;
      const atStart = (await objectRequests(origin.url)) - before;
      // the manifest, tree, times, small-file stream and the chunks outside ext4: big files' content stays on the origin
      const bigChunks = Math.ceil(big.length / (1 * MiB));
      assert.ok(atStart < total - bigChunks, `${atStart} objects fetched to start, of ${total}`);
      const at = fs.readFileSync(exported).indexOf(big.subarray(2 * MiB, 2 * MiB + 4096));
      const r = qemuIo(uri, [`read -P ${big[2 * MiB + 8192]} ${at + 8192} 1`, `read ${at} 4096`]);
      assert.equal(r.status, 0, r.out);
      assert.doesNotMatch(r.out, /fail|error/i, r.out);
      const afterRead = (await objectRequests(origin.url)) - before;
      assert.ok(afterRead - atStart >= 1 && afterRead - atStart <= 2, `a 4 KiB read inside big.bin fetched ${afterRead - atStart} objects`);
      const c = qemuCompare(exported, uri);
      assert.ok(c.identical, c.out);
      const all = (await objectRequests(origin.url)) - before;
      console.log(`files image --from, --no-fill: ${atStart} of ${total} objects fetched before the first read, ${afterRead - atStart} for a 4 KiB read in big.bin, ${all} after reading it all`);
      assert.ok(all <= total, `${all} objects fetched for an image of ${total}: some twice`);
      assert.equal(s.last().fillDone ?? false, false);
    } finally {
      await s.stop();
    }
  });

  it('--from with the fill: every object ends in the cache, the image named there, export from the cache alone matches', { timeout: 180_000 }, async () => {
    origin ??= await startServe(store);
    const cache = path.join(t.dir, 'cache-fill');
    const sock = path.join(t.dir, 'fill.sock');
    const s = await startNbd(cache, ['files:1', '--from', origin.url, '--cache', cache, '--socket', sock, '--readonly']);
    try {
      await waitFor(() => s.last().fillDone === true, 120_000, 'the fill');
      assert.equal(s.last().cachedObjects, s.last().objects);
    } finally {
      await s.stop();
    }
    const v = vmdn(cache, ['verify']);
    assert.equal(v.status, 0, v.stdout + v.stderr);
    assert.deepEqual(v.json.problems, []);
    const out = path.join(t.dir, 'from-cache.raw');
    vmdnOk(cache, ['export', 'files:1', out]);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(exported)));
    fs.rmSync(out);
  });
});

describe('vmdn nbd of a packages-strategy image', { skip }, () => {
  const t = tmpDir('vmdn-nbd-packages-');
  let archive: DebArchive | undefined;
  const savedCache = process.env.VMDN_DEB_CACHE;
  after(async () => {
    if (savedCache !== undefined) process.env.VMDN_DEB_CACHE = savedCache;
    await archive?.close();
    t.cleanup();
  });

  it('serves exactly what vmdn export writes: package files unpacked for the metadata build, own big files read on demand', { timeout: 180_000 }, async () => {
    delete process.env.VMDN_DEB_CACHE; // the CLI would share .debs across stores through it
    const work = path.join(t.dir, 'debs');
    fs.mkdirSync(work);
    const alpha = buildDeb({ name: 'alpha', version: '1.0-1', arch: 'amd64', compress: 'xz', files: [{ path: 'usr/bin/alpha', data: prng(31, 40_000), mode: 0o755 }, { path: 'usr/share/alpha/data.bin', data: prng(32, 1_300_000) }] }, work);
    const beta = buildDeb({ name: 'beta', version: '2.0-1', arch: 'all', compress: 'gzip', files: [{ path: 'usr/share/beta/words.txt', data: Buffer.from('beta words\n'.repeat(100)) }] }, work);
    archive = await DebArchive.start();
    archive.add(alpha).add(beta);
    const disk = path.join(t.dir, 'pk.raw');
    buildImage(disk, {
      packages: [alpha, beta],
      userFiles: [{ path: 'srv/own.bin', data: prng(33, 700_000) }, { path: 'root/notes.txt', data: Buffer.from('notes\n') }],
      hardLinks: [['srv/own.bin', 'srv/own-link.bin']],
    }, t.dir);
    const store = path.join(t.dir, 'store');
    const r = await vmdnAsyncOk(store, ['import', disk, '--name', 'pk:1', '--strategy', 'packages', '--apt-source', archive.url, '--keyring', archive.keyring]);
    assert.equal(r.packages?.[0]?.installed, 2, JSON.stringify(r));
    const exported = path.join(t.dir, 'exported.raw');
    vmdnOk(store, ['export', 'pk:1', exported]);
    const sock = path.join(t.dir, 'pk.sock');
    const s = await startNbd(store, ['pk:1', '--socket', sock, '--readonly']);
    try {
      assert.ok(s.info.rebuilt && s.info.rebuilt.directFiles >= 1, JSON.stringify(s.info));
      const c = qemuCompare(exported, `nbd+unix:///pk:1?socket=${sock}`);
      assert.ok(c.identical, c.out);
    } finally {
      await s.stop();
    }
  });
});

const corpus = corpusDir();
if (corpus.reason) console.log(`# SKIP nbd of corpus base as a files image: ${corpus.reason}`);

describe('vmdn nbd of corpus base imported with --strategy files', { skip: skip || corpus.reason }, () => {
  const t = tmpDir('vmdn-nbd-files-corpus-');
  const store = path.join(t.dir, 'store');
  after(() => t.cleanup());

  it('qemu-img compare against vmdn export: identical', { timeout: 600_000 }, async () => {
    vmdnOk(store, ['import', path.join(corpus.dir!, 'base.raw'), '--name', 'base', '--strategy', 'files']);
    const exported = path.join(t.dir, 'base.raw');
    vmdnOk(store, ['export', 'base', exported]);
    const sock = path.join(t.dir, 'base.sock');
    const t0 = Date.now();
    const s = await startNbd(store, ['base', '--socket', sock, '--readonly']);
    try {
      console.log(`corpus base: listening after ${Date.now() - t0} ms (metadata built in ${s.info.rebuilt.buildMs} ms, ${s.info.rebuilt.directFiles} files read on demand)`);
      const c = qemuCompare(exported, `nbd+unix:///base?socket=${sock}`);
      assert.ok(c.identical, c.out);
    } finally {
      await s.stop();
    }
  });
});
