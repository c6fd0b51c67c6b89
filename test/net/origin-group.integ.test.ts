/**
 * An origin group (issue 17): two `vmdn serve` processes on one local store
 * directory behind a real nginx round robin (docs/http-api.md, "An origin
 * group"). Every request may land on either origin, so what one origin
 * accepted must be visible to the other at once: a push whose objects went to
 * one and whose name went to the other is complete, and pulls see it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { pushImage } from '../../src/net/client/push.js';
import { pullImage } from '../../src/net/client/pull.js';
import { qemuCompare } from '../helpers/cli.js';
import { sampleDisk } from '../helpers/images.js';
import { startServe, type Served } from '../helpers/serve.js';
import { tmpDir } from '../helpers/tmp.js';
import { hasNginx, nginxOriginGroupConf, startNginx, type Nginx } from './nginx.js';

const skip = hasNginx() ? false : 'nginx not installed (scripts/ensure-debian-tools.mjs installs it)';
const TOKEN = 'origin-group-admin-token-0123456789';

describe('two origins on one store behind nginx round robin', { skip, timeout: 180_000 }, () => {
  let t: ReturnType<typeof tmpDir>;
  let origins: Served[] = [];
  let nginx: Nginx;
  const publishers: LocalStore[] = [];
  const src = (seed: number) => path.join(t.dir, `src${seed}.raw`);

  /** A publisher store holding `img:1` made from sampleDisk(seed). */
  const publisher = async (seed: number) => {
    sampleDisk(src(seed), seed);
    const s = await LocalStore.open(path.join(t.dir, `pub${seed}`));
    publishers.push(s);
    await importImageFile(s, src(seed), parseImageRef('img:1'), { chunker: DEFAULT_CDC });
    return s;
  };

  const pull = async (name: string, out: string) => {
    const cache = await LocalStore.open(path.join(t.dir, `cache-${path.basename(out)}`), { workers: 0 });
    try {
      return await pullImage({ url: nginx.url, ref: parseImageRef(name), out, cache, http: { retries: 3, backoffMs: 20 } });
    } finally {
      await cache.close();
    }
  };

  before(async () => {
    t = tmpDir('vmdn-origin-group-');
    const store = path.join(t.dir, 'origin');
    await (await LocalStore.open(store)).close();
    const env = { ...process.env, VMDN_TOKEN: TOKEN };
    origins = await Promise.all([startServe(store, { env }), startServe(store, { env })]);
    const dir = path.join(t.dir, 'nginx');
    nginx = await startNginx(dir, (port) => nginxOriginGroupConf(dir, port, origins.map((o) => o.url)));
  });

  after(async () => {
    for (const p of publishers) await p.close();
    await nginx?.stop();
    for (const o of origins) await o.stop();
    t?.cleanup();
  });

  it('an object uploaded to one origin is present at the other at once', async () => {
    const pub = await publisher(51);
    const [a, b] = origins as [Served, Served];
    const objects = pub.index.listObjects().slice(0, 30);
    for (const o of objects) {
      const put = await fetch(`${a.url}/v1/objects/${o.digest}`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}` }, body: Buffer.from(await pub.getEncoded(o.digest)) });
      assert.equal(put.status, 201);
      // the next request of the same push may land on the other origin
      const missing = await fetch(`${b.url}/v1/objects/missing`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ digests: [o.digest] }) });
      assert.deepEqual(await missing.json(), { missing: [] }, `object ${o.digest.slice(0, 12)} uploaded to one origin is missing at the other`);
    }
  });

  it('a push through the front is pulled back through it identical, and both origins name it', async () => {
    const pub = await publisher(52);
    const r = await pushImage(pub, { url: nginx.url, token: TOKEN, local: parseImageRef('img:1'), remote: parseImageRef('one:1'), concurrency: 8 });
    for (const o of origins) {
      const named = (await (await fetch(`${o.url}/v1/images/one/1`)).json()) as { manifest?: string };
      assert.equal(named.manifest, r.manifest);
    }
    const out = path.join(t.dir, 'one.raw');
    await pull('one:1', out);
    const c = qemuCompare(src(52), out);
    assert.ok(c.identical, c.out);
  });

  it('a name pushed private through one origin is hidden at the other at once', async () => {
    const pub = await publisher(55);
    const [a, b] = origins as [Served, Served];
    // b has just answered that no image is private (and may remember it)
    assert.equal((await fetch(`${b.url}/v1/images`)).status, 200);
    const r = await pushImage(pub, { url: a.url, token: TOKEN, local: parseImageRef('img:1'), remote: parseImageRef('secret:1'), private: true });
    assert.equal((await fetch(`${b.url}/v1/images/secret/1`)).status, 404, 'the other origin shows the private name to anyone');
    assert.equal((await fetch(`${b.url}/v1/objects/${r.manifest}`)).status, 404, 'the other origin serves the private manifest to anyone');
    assert.equal((await fetch(`${b.url}/v1/images/secret/1`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
  });

  it('concurrent pushes of one name from two clients end with one winner that both origins serve', async () => {
    const [p1, p2] = [await publisher(53), await publisher(54)];
    const push = (s: LocalStore) => pushImage(s, { url: nginx.url, token: TOKEN, local: parseImageRef('img:1'), remote: parseImageRef('race:1'), concurrency: 8 });
    const [r1, r2] = await Promise.all([push(p1), push(p2)]);
    assert.notEqual(r1.manifest, r2.manifest);
    const names = await Promise.all(origins.map(async (o) => ((await (await fetch(`${o.url}/v1/images/race/1`)).json()) as { manifest?: string }).manifest));
    assert.equal(names[0], names[1], 'the two origins disagree on the name');
    const winner = names[0] === r1.manifest ? 53 : names[0] === r2.manifest ? 54 : undefined;
    assert.ok(winner, `race:1 names ${names[0]}, neither push's manifest`);
    const out = path.join(t.dir, 'race.raw');
    await pull('race:1', out);
    const c = qemuCompare(src(winner), out);
    assert.ok(c.identical, c.out);
  });
});
