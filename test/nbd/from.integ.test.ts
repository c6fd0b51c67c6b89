/**
 * `vmdn nbd NAME --from URL` against a real `vmdn serve` origin (a child
 * process) and real NBD clients: the export reads as the image while it
 * downloads, reads fetch only what they touch, nothing is fetched twice, the
 * fill leaves a cache a pull needs nothing more from, an unreachable origin
 * fails reads with EIO without killing the server, and a killed fill resumes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';
import { qemuCompare, vmdn, vmdnOk, waitFor } from '../helpers/cli.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { resolveImage } from '../../src/images/names.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { hasQemuTools } from './raw-client.js';
import { objectBytes, readObjectBytes, writeObjectBytes } from '../helpers/object-bytes.js';
import { countObjects } from '../helpers/store-objects.js';
import { startServe, type Served } from '../helpers/serve.js';
import { qemuIo, startNbd } from '../helpers/nbd-run.js';

const skip = hasQemuTools() ? false : 'qemu-img/qemu-io not installed (scripts/ensure-debian-tools.mjs installs them)';

type Origin = Served;

/** `vmdn serve` on 127.0.0.1:PORT (0: any). */
const startOrigin = (store: string, port = 0): Promise<Origin> => startServe(store, { port });

async function objectRequests(url: string): Promise<number> {
  return ((await (await fetch(`${url}/stats`)).json()) as { objectRequests: number }).objectRequests;
}

const startFrom = startNbd;

describe('vmdn nbd --from an origin', { skip }, () => {
  const t = tmpDir('vmdn-nbd-from-');
  const originStore = path.join(t.dir, 'origin');
  const disk = path.join(t.dir, 'disk.raw');
  let origin: Origin;
  /** Objects the origin holds for the image: its chunks and the manifest. */
  let total = 0;
  let n = 0;
  const next = () => {
    n++;
    return { cache: path.join(t.dir, `cache${n}`), sock: path.join(t.dir, `nbd${n}.sock`) };
  };
  const uri = (sock: string) => `nbd+unix:///img:1?socket=${sock}`;

  before(async () => {
    // 8 MiB that does not compress, then 8 MiB of hole: ~200 chunks
    fs.writeFileSync(disk, prng(13, 8 << 20));
    fs.truncateSync(disk, 16 << 20);
    vmdnOk(originStore, ['import', disk, '--name', 'img:1']);
    total = await countObjects(originStore);
    origin = await startOrigin(originStore);
  });
  after(async () => {
    await origin.stop();
    t.cleanup();
  });

  it('reads as the image while it downloads, and fetches no object twice', { timeout: 120_000 }, async () => {
    const { cache, sock } = next();
    const before = await objectRequests(origin.url);
    const s = await startFrom(cache, ['img:1', '--from', origin.url, '--cache', cache, '--socket', sock, '--readonly', '--metrics', '127.0.0.1:0'], { VMDN_NBD_FILL_PAUSE_MS: '50' });
    try {
      const c = qemuCompare(disk, uri(sock));
      assert.ok(c.identical, c.out);
      await waitFor(() => s.last().fillDone === true, 60_000, 'the fill');
      const last = s.last();
      assert.equal(last.demandObjects + last.prefilledObjects, total - 1, JSON.stringify(last));
      // the 8 MiB of data, not the hole: qemu skips it (block status) or gets it as OFFSET_HOLE, nothing read
      assert.ok(last.guestBytesRead >= 8 << 20 && last.guestBytesRead < 16 << 20, `guest read ${last.guestBytesRead}`);
      const fetched = (await objectRequests(origin.url)) - before;
      assert.ok(fetched <= total, `origin served ${fetched} objects for an image of ${total} (manifest included)`);
      const metrics = await (await fetch(JSON.parse(s.output().stdout.slice(0, s.output().stdout.indexOf('\n}\n') + 2)).metrics)).text();
      assert.match(metrics, /^vmdn_nbd_fill_done 1$/m);
      assert.match(metrics, new RegExp(`^vmdn_nbd_cached_objects ${total - 1}$`, 'm'));
    } finally {
      await s.stop();
    }
  });

  it('--no-fill: a small read fetches a few objects, not the image', { timeout: 60_000 }, async () => {
    const { cache, sock } = next();
    const before = await objectRequests(origin.url);
    const s = await startFrom(cache, ['img:1', '--from', origin.url, '--cache', cache, '--socket', sock, '--no-fill']);
    try {
      const r = qemuIo(uri(sock), ['read -P 0 12M 64k', 'read 1M 64k']);
      assert.equal(r.status, 0, r.out);
      assert.doesNotMatch(r.out, /fail|error/i);
      await new Promise((res) => setTimeout(res, 1500));
      const fetched = (await objectRequests(origin.url)) - before;
      assert.ok(fetched >= 2 && fetched <= 6, `${fetched} objects fetched of ${total}`);
      assert.equal(s.last().fillDone, false);
      assert.ok(s.last().demandObjects <= 5, JSON.stringify(s.last()));
    } finally {
      await s.stop();
    }
  });

  it('the fill names the image in the cache (the default cache, the store): a pull then downloads nothing, verify is clean', { timeout: 120_000 }, async () => {
    const { cache, sock } = next();
    const s = await startFrom(cache, ['img:1', '--from', origin.url, '--socket', sock, '--readonly']);
    try {
      await waitFor(() => s.last().fillDone === true, 60_000, 'the fill');
      assert.equal(s.last().cachedObjects, total - 1);
      // named in the cache by the fill: verify checks it, export works from the cache alone
      const v = vmdn(cache, ['verify']);
      assert.equal(v.status, 0, v.stdout + v.stderr);
      assert.equal(v.json.imagesChecked, 1);
      assert.deepEqual(v.json.problems, []);
      const exported = path.join(t.dir, 'exported.raw');
      vmdnOk(cache, ['export', 'img:1', exported]);
      assert.ok(fs.readFileSync(exported).equals(fs.readFileSync(disk)));
      const out = path.join(t.dir, 'pulled.raw');
      const p = vmdnOk(cache, ['pull', origin.url, 'img:1', out]);
      assert.equal(p.objects.downloaded, 0, JSON.stringify(p.objects));
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(disk)));
    } finally {
      await s.stop();
    }
  });

  it('origin gone: a read of what is not cached fails with EIO in bounded time, the server lives, and reads again once the origin is back', { timeout: 120_000 }, async () => {
    const { cache, sock } = next();
    const s = await startFrom(cache, ['img:1', '--from', origin.url, '--cache', cache, '--socket', sock, '--no-fill']);
    try {
      assert.equal(qemuIo(uri(sock), ['read 0 64k']).status, 0);
      const port = origin.port;
      await origin.stop();
      const failed = qemuIo(uri(sock), ['read 4M 64k']);
      assert.match(failed.out, /Input\/output error/, failed.out);
      assert.ok(failed.ms < 30_000, `the failing read took ${failed.ms} ms`);
      assert.ok(s.alive(), 'vmdn nbd died');
      // what is cached still reads
      assert.doesNotMatch(qemuIo(uri(sock), ['read 0 64k']).out, /error/i);
      origin = await startOrigin(originStore, port);
      assert.equal(origin.port, port);
      const again = qemuIo(uri(sock), ['read 4M 64k']);
      assert.doesNotMatch(again.out, /error/i, again.out);
      await waitFor(() => s.last().demandErrors >= 1, 5000, 'the counters');
    } finally {
      // the next tests need an origin, whatever failed here
      if (origin.child.exitCode !== null || origin.child.signalCode !== null) origin = await startOrigin(originStore, origin.port);
      await s.stop();
    }
  });

  it('kill -9 during the fill: the cache verifies, and the restarted server fetches none of what the first one kept', { timeout: 120_000 }, async () => {
    const { cache, sock } = next();
    const env = { VMDN_NBD_FILL_PAUSE_MS: '150' };
    const first = await startFrom(cache, ['img:1', '--from', origin.url, '--cache', cache, '--socket', sock, '--readonly'], env);
    try {
      await waitFor(() => (first.last().prefilledObjects ?? 0) >= 32, 60_000, 'the fill to get going');
    } finally {
      first.child.kill('SIGKILL');
      await first.done;
    }
    const kept = await countObjects(cache);
    assert.ok(kept > 1 && kept < total, `${kept} of ${total} objects kept`);
    const v1 = vmdn(cache, ['verify']);
    // objects only: no image is named in the cache yet
    assert.equal(v1.status, 0, v1.stdout + v1.stderr);
    const before = await objectRequests(origin.url);
    fs.rmSync(sock, { force: true });
    const second = await startFrom(cache, ['img:1', '--from', origin.url, '--cache', cache, '--socket', sock, '--readonly']);
    try {
      await waitFor(() => second.last().fillDone === true, 60_000, 'the second fill');
      const fetched = (await objectRequests(origin.url)) - before;
      assert.equal(fetched, total - kept, `fetched ${fetched}, missing were ${total - kept}`);
      const c = qemuCompare(disk, uri(sock));
      assert.ok(c.identical, c.out);
      const v2 = vmdn(cache, ['verify']);
      assert.equal(v2.status, 0, v2.stdout + v2.stderr);
    } finally {
      await second.stop();
    }
  });

  it('an object corrupt at the origin: the read that needs it fails with EIO, the server lives, and reads it once the origin has it right', { timeout: 120_000 }, async () => {
    const { cache, sock } = next();
    const store = await LocalStore.open(originStore);
    const { manifest } = await resolveImage(store, parseImageRef('img:1'));
    const [at, , digest] = manifest.chunks.find(([o]) => o >= 2 << 20)!;
    const place = objectBytes(store, digest);
    await store.close();
    const good = readObjectBytes(place);
    const bad = Buffer.from(good);
    bad[bad.length >> 1] ^= 0xff;
    writeObjectBytes(place, bad);
    const s = await startFrom(cache, ['img:1', '--from', origin.url, '--cache', cache, '--socket', sock, '--no-fill']);
    try {
      const failed = qemuIo(uri(sock), [`read ${at} 4k`]);
      assert.match(failed.out, /Input\/output error/, failed.out);
      assert.ok(s.alive(), 'vmdn nbd died');
      assert.doesNotMatch(qemuIo(uri(sock), ['read 0 64k']).out, /error/i);
      writeObjectBytes(place, good);
      const again = qemuIo(uri(sock), [`read ${at} 4k`]);
      assert.doesNotMatch(again.out, /error/i, again.out);
    } finally {
      writeObjectBytes(place, good);
      await s.stop();
    }
  });

  it('usage: --cache, --no-fill, --metrics only with --from; an origin unreachable at start is an error, not a server', { timeout: 60_000 }, async () => {
    const { cache, sock } = next();
    for (const extra of [['--no-fill'], ['--cache', cache], ['--metrics', '127.0.0.1:0']]) {
      const r = vmdn(originStore, ['nbd', 'img:1', '--socket', sock, ...extra]);
      assert.equal(r.status, 2, `${extra[0]}: ${r.stderr}`);
    }
    const r = vmdn(cache, ['nbd', 'img:1', '--from', 'http://127.0.0.1:1', '--socket', sock]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr + r.stdout, /unreachable/);
    assert.ok(!fs.existsSync(sock));
  });
});
