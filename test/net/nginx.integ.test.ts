/**
 * A real nginx with proxy_cache in front of the origin works as an edge: pulls
 * through it are identical, the second pull never reaches the origin for
 * objects, and a client's no-cache refetch after a corrupted copy goes back
 * to the origin.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { Origin } from '../../src/net/server/origin.js';
import { pullImage } from '../../src/net/client/pull.js';
import { qemuCompare } from '../helpers/cli.js';
import { sampleDisk } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { hasNginx, nginxConf, startNginx, type Nginx } from './nginx.js';
import { flipBit, startProxy } from './proxy.js';

const skip = hasNginx() ? false : 'nginx not installed (scripts/ensure-debian-tools.mjs installs it)';

describe('nginx proxy_cache as an edge', { skip }, () => {
  let t: ReturnType<typeof tmpDir>;
  let origin: Origin<LocalStore>;
  let nginx: Nginx;
  let objects = 0;
  let requested: string[] = [];
  const caches: LocalStore[] = [];
  const src = () => path.join(t.dir, 'src.raw');

  const pull = async (url: string, name: string) => {
    const cache = await LocalStore.open(path.join(t.dir, 'caches', name));
    caches.push(cache);
    const out = path.join(t.dir, `${name}.raw`);
    const r = await pullImage({ url, ref: parseImageRef('img:1'), out, cache, http: { retries: 2, backoffMs: 10 } });
    const c = qemuCompare(src(), out);
    assert.ok(c.identical, c.out);
    return r;
  };

  before(async () => {
    t = tmpDir('vmdn-nginx-');
    sampleDisk(src(), 21);
    const store = await LocalStore.open(path.join(t.dir, 'origin'));
    const r = await importImageFile(store, src(), parseImageRef('img:1'), { chunker: DEFAULT_CDC });
    objects = r.stats.distinctChunks + 1;
    origin = new Origin(store, { onObjectRequest: (d) => requested.push(d) });
    await origin.listen();
    nginx = await startNginx(path.join(t.dir, 'nginx'), (port) => nginxConf(path.join(t.dir, 'nginx'), port, origin.url));
  });

  after(async () => {
    for (const c of caches) await c.close();
    await nginx?.stop();
    await origin?.close();
    await origin?.store.close();
    t.cleanup();
  });

  it('first pull fills nginx (one origin fetch per object), the second never reaches the origin for objects', async () => {
    requested = [];
    // two clients at once: proxy_cache_lock turns concurrent misses into one upstream fetch
    await Promise.all([pull(nginx.url, 'a'), pull(nginx.url, 'b')]);
    assert.equal(new Set(requested).size, objects);
    assert.ok(requested.length <= objects + 2, `${requested.length} origin object requests for ${objects} objects`);
    requested = [];
    const r = await pull(nginx.url, 'c');
    assert.equal(r.objects.downloaded, r.objects.total);
    assert.equal(requested.length, 0, 'the origin saw object requests on the second pull');
  });

  it('ranges and conditional requests pass through nginx', async () => {
    const d = origin.store.index.listObjects()[0]!.digest;
    const full = await fetch(`${nginx.url}/v1/objects/${d}`);
    assert.equal(full.headers.get('x-cache-status'), 'HIT');
    const body = Buffer.from(await full.arrayBuffer());
    const part = await fetch(`${nginx.url}/v1/objects/${d}`, { headers: { range: 'bytes=1-8' } });
    assert.equal(part.status, 206);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), body.subarray(1, 9));
    const cond = await fetch(`${nginx.url}/v1/objects/${d}`, { headers: { 'if-none-match': `"${d}"` } });
    assert.equal(cond.status, 304);
  });

  it('after a corrupted copy, the client refetch goes through nginx to the origin', async () => {
    const mitm = await startProxy(nginx.url, { transform: (_d, body, n) => (n <= 2 ? flipBit(body) : body) });
    try {
      requested = [];
      const r = await pull(mitm.url, 'd');
      assert.equal(r.corruptRefetched, 2);
      assert.equal(requested.length, 2, 'each refetch bypassed the nginx cache exactly once');
    } finally {
      await mitm.close();
    }
  });
});
