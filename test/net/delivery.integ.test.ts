/**
 * Delivery over real loopback HTTP: an origin, two chained edges and several
 * clients in this process; every pulled image is checked by qemu-img compare.
 * Also: push with and without a token, seeds, corruption by an edge and by a
 * man in the middle, a connection cut mid-pull and its resume.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { uniqueChunks, decodeManifest } from '../../src/model/manifest.js';
import { Origin } from '../../src/net/server/origin.js';
import { Edge } from '../../src/net/server/edge.js';
import { pullImage, type PullResult } from '../../src/net/client/pull.js';
import { pushImage } from '../../src/net/client/push.js';
import { VmdnError } from '../../src/errors.js';
import { CLI, qemuCompare } from '../helpers/cli.js';
import { prng, sampleDisk } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { flipBit, startProxy } from './proxy.js';

const run = promisify(execFile);
const TOKEN = 'test-token-0123456789';
const FAST = { retries: 2, backoffMs: 10, maxBackoffMs: 20 };

describe('network delivery on 127.0.0.1', () => {
  let t: ReturnType<typeof tmpDir>;
  let publisher: LocalStore;
  let origin: Origin<LocalStore>;
  let edge1: Edge;
  let edge2: Edge;
  let requested: string[] = [];
  const src1 = () => path.join(t.dir, 'one.raw');
  const src2 = () => path.join(t.dir, 'two.raw');
  let objectsOfOne = 0;
  const caches: LocalStore[] = [];

  const cache = async (name: string) => {
    const c = await LocalStore.open(path.join(t.dir, 'caches', name));
    caches.push(c);
    return c;
  };
  const pull = async (url: string, ref: string, out: string, name: string, extra: Partial<Parameters<typeof pullImage>[0]> = {}): Promise<PullResult> =>
    pullImage({ url, ref: parseImageRef(ref), out: path.join(t.dir, out), cache: await cache(name), http: FAST, ...extra });
  const identical = (a: string, b: string) => {
    const c = qemuCompare(a, path.join(t.dir, b));
    assert.ok(c.identical, c.out);
  };

  before(async () => {
    t = tmpDir('vmdn-net-');
    sampleDisk(src1(), 11);
    // the second image shares most data with the first, plus some of its own
    fs.copyFileSync(src1(), src2());
    const fd = fs.openSync(src2(), 'r+');
    fs.writeSync(fd, prng(99, 1 << 20), 0, 1 << 20, 20 << 20);
    fs.closeSync(fd);
    publisher = await LocalStore.open(path.join(t.dir, 'publisher'));
    await importImageFile(publisher, src1(), parseImageRef('one:1'), { chunker: DEFAULT_CDC });
    await importImageFile(publisher, src2(), parseImageRef('two:1'), { chunker: DEFAULT_CDC });
    const originStore = await LocalStore.open(path.join(t.dir, 'origin'));
    origin = new Origin(originStore, { token: TOKEN, onObjectRequest: (d) => requested.push(d) });
    await origin.listen();
  });

  after(async () => {
    for (const c of caches) await c.close();
    await edge2?.close();
    await edge1?.close();
    await origin.close();
    await origin.store.close();
    await publisher.close();
    t.cleanup();
  });

  it('refuses uploads without a valid token', async () => {
    const d = 'ab'.repeat(32);
    for (const auth of [undefined, 'Bearer wrong-token', `Bearer ${TOKEN}x`, `Basic ${TOKEN}`]) {
      const r = await fetch(`${origin.url}/v1/objects/${d}`, { method: 'PUT', body: 'junk', headers: auth ? { authorization: auth } : {} });
      assert.equal(r.status, 401, String(auth));
      assert.equal((await r.json()).error.code, 'E_AUTH');
    }
    const r = await fetch(`${origin.url}/v1/objects/missing`, { method: 'POST', body: JSON.stringify({ digests: [d] }) });
    assert.equal(r.status, 401);
    // the CLI with a wrong token file: exit 7, nothing stored
    fs.writeFileSync(path.join(t.dir, 'bad-token'), 'nope\n');
    const cli = await run(process.execPath, [CLI, 'push', 'one:1', origin.url, '--name', 'one:1', '--token-file', path.join(t.dir, 'bad-token'), '--store', publisher.dir, '--json'])
      .then(() => ({ code: 0, stdout: '' }), (e) => ({ code: e.code as number, stdout: e.stdout as string }));
    assert.equal(cli.code, 7);
    assert.equal(JSON.parse(cli.stdout).error.code, 'E_AUTH');
    assert.equal(origin.store.index.totals().objects, 0);
    // a body that does not hash to its address is refused even with the token
    const bad = await fetch(`${origin.url}/v1/objects/${d}`, { method: 'PUT', body: 'junk', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(bad.status, 400);
    assert.equal(origin.store.index.totals().objects, 0);
  });

  it('push sends only the objects the origin lacks', async () => {
    fs.writeFileSync(path.join(t.dir, 'token'), `${TOKEN}\n`);
    const { stdout } = await run(process.execPath, [CLI, 'push', 'one:1', origin.url, '--name', 'one:1', '--token-file', path.join(t.dir, 'token'), '--store', publisher.dir, '--json']);
    const first = JSON.parse(stdout);
    assert.equal(first.objectsSent, first.objects);
    objectsOfOne = first.objects;
    const before = origin.stats.objectsUploaded;
    const m1 = uniqueChunks(decodeManifest(await publisher.get(first.manifest)));
    const r2 = await pushImage(publisher, { url: origin.url, token: TOKEN, local: parseImageRef('two:1'), remote: parseImageRef('two:1') });
    const m2 = uniqueChunks(decodeManifest(await publisher.get(r2.manifest)));
    const expected = [...m2.keys()].filter((d) => !m1.has(d)).length + 1; // + its manifest
    assert.equal(r2.objectsSent, expected);
    assert.ok(r2.objectsSent < r2.objects / 2, `${r2.objectsSent} of ${r2.objects} sent`);
    assert.equal(origin.stats.objectsUploaded - before, expected);
    // pushing again sends nothing
    const again = await pushImage(publisher, { url: origin.url, token: TOKEN, local: parseImageRef('two:1'), remote: parseImageRef('two:2') });
    assert.equal(again.objectsSent, 0);
    const names = (await (await fetch(`${origin.url}/v1/images`)).json()).images.map((i: { ref: string }) => i.ref);
    assert.deepEqual(names.sort(), ['one:1', 'two:1', 'two:2']);
  });

  it('origin -> edge -> edge -> several clients: identical images, one origin fetch per object', async () => {
    edge1 = await Edge.open({ upstream: origin.url, cacheDir: path.join(t.dir, 'edge1'), maxSize: 1 << 30, http: FAST });
    await edge1.listen();
    edge2 = await Edge.open({ upstream: edge1.url, cacheDir: path.join(t.dir, 'edge2'), maxSize: 1 << 30, policy: 'lru', http: FAST });
    await edge2.listen();
    requested = [];
    const results = await Promise.all([
      pull(edge2.url, 'one:1', 'c1.raw', 'c1'),
      pull(edge2.url, 'one:1', 'c2.qcow2', 'c2'),
      pull(edge2.url, 'one:1', 'c3.raw', 'c3'),
      pull(edge1.url, 'one:1', 'c4.raw', 'c4'),
    ]);
    for (const [i, out] of ['c1.raw', 'c2.qcow2', 'c3.raw', 'c4.raw'].entries()) {
      identical(src1(), out);
      assert.equal(results[i]!.objects.downloaded, results[i]!.objects.total);
    }
    assert.equal(results[1]!.format, 'qcow2');
    // concurrent misses coalesce at every edge: the origin served each object exactly once
    assert.equal(requested.length, objectsOfOne);
    assert.equal(new Set(requested).size, objectsOfOne);
    assert.ok(edge2.store.stats.coalesced > 0 || edge1.store.stats.coalesced > 0);
    // a second wave is served by the edges alone
    requested = [];
    await pull(edge2.url, 'one:1', 'c5.raw', 'c5');
    identical(src1(), 'c5.raw');
    assert.equal(requested.length, 0);
    const stats = await (await fetch(`${edge2.url}/stats`)).json();
    assert.ok(stats.hits >= objectsOfOne && stats.bytesServed > 0, JSON.stringify(stats));
    const metrics = await (await fetch(`${edge2.url}/metrics`)).text();
    assert.match(metrics, /^vmdn_edge_hits_total \d+$/m);
    assert.match(metrics, /^vmdn_edge_bytes_from_upstream_total \d+$/m);
  });

  it('objects carry immutable cache headers, ETags and Range support at origin and edge', async () => {
    const { manifest } = await (await fetch(`${edge2.url}/v1/images/one/1`)).json();
    for (const base of [origin.url, edge2.url]) {
      const full = await fetch(`${base}/v1/objects/${manifest}`);
      assert.equal(full.status, 200);
      assert.equal(full.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.equal(full.headers.get('etag'), `"${manifest}"`);
      const body = Buffer.from(await full.arrayBuffer());
      assert.equal(Number(full.headers.get('content-length')), body.length);
      const part = await fetch(`${base}/v1/objects/${manifest}`, { headers: { range: 'bytes=4-19' } });
      assert.equal(part.status, 206);
      assert.equal(part.headers.get('content-range'), `bytes 4-19/${body.length}`);
      assert.deepEqual(Buffer.from(await part.arrayBuffer()), body.subarray(4, 20));
      const past = await fetch(`${base}/v1/objects/${manifest}`, { headers: { range: `bytes=${body.length}-` } });
      assert.equal(past.status, 416);
      const head = await fetch(`${base}/v1/objects/${manifest}`, { method: 'HEAD' });
      assert.equal(Number(head.headers.get('content-length')), body.length);
      const cond = await fetch(`${base}/v1/objects/${manifest}`, { headers: { 'if-none-match': `"${manifest}"` } });
      assert.equal(cond.status, 304);
    }
  });

  it('seeds: chunks of a local image are reused, the rest downloaded', async () => {
    const r = await pull(origin.url, 'two:1', 'seeded.raw', 'seeded', { seeds: [src1()] });
    identical(src2(), 'seeded.raw');
    assert.ok(r.objects.seeded > r.objects.total / 2, JSON.stringify(r.objects));
    assert.equal(r.objects.seeded + r.objects.downloaded, r.objects.total);
    // and what the cache holds already is not fetched again
    const again = await pullImage({ url: origin.url, ref: parseImageRef('two:1'), out: path.join(t.dir, 'again.raw'), cache: caches.at(-1)!, http: FAST });
    assert.equal(again.objects.downloaded, 0);
    identical(src2(), 'again.raw');
  });

  it('a corrupted object on an edge is detected, refetched from upstream, and the image is identical', async () => {
    const victims = [...edge1.store.cache.index.listObjects()].slice(0, 3);
    for (const v of victims) fs.writeFileSync(edge1.store.cache.objectPath(v.digest), flipBit(fs.readFileSync(edge1.store.cache.objectPath(v.digest))));
    const r = await pull(edge1.url, 'one:1', 'rot.raw', 'rot');
    identical(src1(), 'rot.raw');
    assert.equal(r.corruptRefetched, 3);
  });

  it('a man in the middle corrupting objects is detected and recovered from; one that always corrupts is a clear error', async () => {
    // Corrupt the first answer for every 5th distinct object, never a retry: a global
    // counter would, under 32 parallel fetches, sometimes hit one object's every attempt.
    const seen = new Set<string>();
    const mitm = await startProxy(edge2.url, {
      transform: (d, body) => {
        const first = !seen.has(d);
        seen.add(d);
        return first && seen.size % 5 === 1 ? flipBit(body) : body;
      },
    });
    try {
      const r = await pull(mitm.url, 'one:1', 'mitm.raw', 'mitm');
      identical(src1(), 'mitm.raw');
      assert.ok(r.corruptRefetched >= 3, `${r.corruptRefetched} refetched`);
    } finally {
      await mitm.close();
    }
    const evil = await startProxy(edge2.url, { transform: (_d, body) => flipBit(body) });
    try {
      await assert.rejects(pull(evil.url, 'one:1', 'evil.raw', 'evil'), (e: VmdnError) => {
        assert.equal(e.code, 'E_CORRUPT_OBJECT');
        assert.ok(e.message.includes(evil.url), e.message);
        return true;
      });
      assert.ok(!fs.existsSync(path.join(t.dir, 'evil.raw')));
    } finally {
      await evil.close();
    }
  });

  it('a connection cut mid-pull resumes without fetching finished objects again', async () => {
    const proxy = await startProxy(origin.url, { cutAfter: 20 });
    const c = await cache('resume');
    await assert.rejects(pullImage({ url: proxy.url, ref: parseImageRef('one:1'), out: path.join(t.dir, 'resume.raw'), cache: c, http: FAST }),
      (e: VmdnError) => e.code === 'E_UNREACHABLE' && e.message.includes(proxy.url));
    const finished = new Set(c.index.listObjects().map((o) => o.digest));
    assert.ok(finished.size >= 10 && finished.size <= 21, `${finished.size} objects finished before the cut`);
    requested = [];
    const requestsBefore = origin.stats.requests;
    const r = await pullImage({ url: origin.url, ref: parseImageRef('one:1'), out: path.join(t.dir, 'resume.raw'), cache: c, http: FAST });
    identical(src1(), 'resume.raw');
    // the objects came in batches (resolve + manifest + one batch), not one request each
    assert.ok(origin.stats.requests - requestsBefore <= 3, `${origin.stats.requests - requestsBefore} requests for ${requested.length} objects`);
    assert.equal(requested.filter((d) => finished.has(d)).length, 0, 'finished objects fetched again');
    assert.equal(requested.length, objectsOfOne - finished.size);
    assert.equal(r.objects.cached + 1, finished.size, 'cached chunks + the manifest');
  });

  it('unknown names and unreachable servers are clear errors', async () => {
    await assert.rejects(pull(edge2.url, 'nope:1', 'x.raw', 'x'), (e: VmdnError) => e.code === 'E_NOT_FOUND' && /nope:1/.test(e.message));
    const dead = await startProxy(origin.url);
    const url = dead.url;
    await dead.close();
    const t0 = Date.now();
    await assert.rejects(pull(url, 'one:1', 'y.raw', 'y'), (e: VmdnError) => e.code === 'E_UNREACHABLE' && e.message.includes(url));
    assert.ok(Date.now() - t0 < 5000);
    // through the CLI: exit status 4 for an unknown name
    const cli = await run(process.execPath, [CLI, 'pull', edge2.url, 'nope:1', path.join(t.dir, 'z.raw'), '--cache', path.join(t.dir, 'caches', 'z'), '--json'])
      .then(() => ({ code: 0, stdout: '' }), (e) => ({ code: e.code as number, stdout: e.stdout as string }));
    assert.equal(cli.code, 4);
    assert.equal(JSON.parse(cli.stdout).error.code, 'E_NOT_FOUND');
  });
});
