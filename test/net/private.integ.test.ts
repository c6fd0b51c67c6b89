/**
 * Private images (issue 16) over real loopback HTTP: invisible and
 * unfetchable (404) to anonymous clients directly, through a vmdn edge and
 * through nginx configured as docs/http-api.md says; visible and fetchable
 * with a read token; an object a public image shares stays public.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { Origin } from '../../src/net/server/origin.js';
import { Edge } from '../../src/net/server/edge.js';
import { TokenStore } from '../../src/net/server/tokens.js';
import { pullImage } from '../../src/net/client/pull.js';
import { pushImage } from '../../src/net/client/push.js';
import { VmdnError } from '../../src/errors.js';
import type { Digest } from '../../src/store/digest.js';
import { qemuCompare } from '../helpers/cli.js';
import { prng, sampleDisk } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { hasNginx, nginxConf, startNginx, type Nginx } from './nginx.js';

const ADMIN = 'admin-token-for-the-test';
const FAST = { retries: 1, backoffMs: 10 };

describe('private images', () => {
  let t: ReturnType<typeof tmpDir>;
  let origin: Origin<LocalStore>;
  let edge: Edge;
  let nginx: Nginx | undefined;
  let reader = '';
  let onlyPrivate: Digest[] = [];
  let shared: Digest[] = [];
  let privManifest = '';
  const caches: LocalStore[] = [];
  const src = (n: string) => path.join(t.dir, `${n}.raw`);

  const pull = async (url: string, ref: string, token?: string) => {
    const cache = await LocalStore.open(path.join(t.dir, 'caches', `c${caches.length}`));
    caches.push(cache);
    const out = path.join(t.dir, `out${caches.length}.raw`);
    await pullImage({ url, ref: parseImageRef(ref), out, cache, http: { ...FAST, token } });
    return out;
  };
  const get = (url: string, token?: string, init: RequestInit = {}) =>
    fetch(url, { ...init, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.headers as Record<string, string>) } });

  before(async () => {
    t = tmpDir('vmdn-private-');
    sampleDisk(src('pub'), 31);
    // the private image shares most chunks with the public one, plus some of its own
    fs.copyFileSync(src('pub'), src('priv'));
    const fd = fs.openSync(src('priv'), 'r+');
    fs.writeSync(fd, prng(77, 1 << 20), 0, 1 << 20, 20 << 20);
    fs.closeSync(fd);
    const local = await LocalStore.open(path.join(t.dir, 'local'));
    await importImageFile(local, src('pub'), parseImageRef('pub:1'), { chunker: DEFAULT_CDC });
    await importImageFile(local, src('priv'), parseImageRef('team/secret:1'), { chunker: DEFAULT_CDC });
    const store = await LocalStore.open(path.join(t.dir, 'origin'));
    const tokens = new TokenStore(store);
    reader = (await tokens.create({ read: ['team/'], write: [], admin: false })).token;
    origin = new Origin(store, { token: ADMIN, tokens });
    await origin.listen();
    await pushImage(local, { url: origin.url, token: ADMIN, local: parseImageRef('pub:1'), remote: parseImageRef('pub:1') });
    const r = await pushImage(local, { url: origin.url, token: ADMIN, local: parseImageRef('team/secret:1'), remote: parseImageRef('team/secret:1'), private: true });
    privManifest = r.manifest;
    for (const { digest } of store.index.listObjects()) {
      const names = store.index.namesUsing(digest);
      if (names.length === 1 && names[0] === 'team/secret') onlyPrivate.push(digest);
      if (names.length === 2) shared.push(digest);
    }
    await local.close();
    assert.ok(onlyPrivate.length > 1 && shared.length > 10, `${onlyPrivate.length} private-only, ${shared.length} shared objects`);
    assert.ok(onlyPrivate.includes(privManifest));
    edge = await Edge.open({ upstream: origin.url, cacheDir: path.join(t.dir, 'edge'), maxSize: 1 << 30, accessTtlMs: 100, http: FAST });
    await edge.listen();
    if (hasNginx()) nginx = await startNginx(path.join(t.dir, 'nginx'), (port) => nginxConf(path.join(t.dir, 'nginx'), port, origin.url));
  });

  after(async () => {
    for (const c of caches) await c.close();
    await nginx?.stop();
    await edge?.close();
    await origin?.close();
    await origin?.store.close();
    t.cleanup();
  });

  /** What an anonymous client sees at `url` (origin, edge or nginx): nothing of the private image, all of the public one. */
  const anonymousSeesNothingPrivate = async (url: string) => {
    const list = (await (await get(`${url}/v1/images`)).json()) as { images: Array<{ ref: string }> };
    assert.deepEqual(list.images.map((i) => i.ref), ['pub:1']);
    assert.equal((await get(`${url}/v1/images/team/secret/1`)).status, 404);
    assert.equal((await get(`${url}/v1/images/team/secret/1`)).status, 404);
    for (const d of onlyPrivate.slice(0, 3)) {
      for (const method of ['GET', 'HEAD']) assert.equal((await get(`${url}/v1/objects/${d}`, undefined, { method })).status, 404, `${method} ${d} at ${url}`);
    }
    assert.equal((await get(`${url}/v1/profiles/${privManifest}`)).status, 404);
    const s = await get(`${url}/v1/objects/${shared[0]}`);
    assert.equal(s.status, 200, 'an object a public image shares is public');
    assert.match(s.headers.get('cache-control') ?? '', /public/);
    await assert.rejects(pull(url, 'team/secret:1'), (e) => e instanceof VmdnError && e.code === 'E_NOT_FOUND');
  };

  it('directly at the origin: anonymous clients see none of it (404), the same as a missing image', async () => {
    await anonymousSeesNothingPrivate(origin.url);
    // a batch leaves the private objects out as it leaves out absent ones
    const b = await get(`${origin.url}/v1/objects/batch`, undefined, { method: 'POST', body: JSON.stringify({ digests: [onlyPrivate[0], shared[0]] }), headers: { 'content-type': 'application/json' } });
    assert.equal(b.status, 200);
    const body = Buffer.from(await b.arrayBuffer());
    assert.ok(body.includes(Buffer.from(await origin.store.getEncoded(shared[0]!))), 'the shared object is in the batch');
    assert.ok(!body.includes(Buffer.from(await origin.store.getEncoded(onlyPrivate[0]!))), 'the private object is in the batch');
  });

  it('with a read token: listed, resolved and pulled bit for bit, answers marked Cache-Control: private', async () => {
    const list = (await (await get(`${origin.url}/v1/images`, reader)).json()) as { images: Array<{ ref: string }> };
    assert.deepEqual(list.images.map((i) => i.ref).sort(), ['pub:1', 'team/secret:1']);
    const ref = await get(`${origin.url}/v1/images/team/secret/1`, reader);
    assert.equal(ref.status, 200);
    assert.match(ref.headers.get('cache-control') ?? '', /^private/);
    const obj = await get(`${origin.url}/v1/objects/${onlyPrivate[0]}`, reader);
    assert.equal(obj.status, 200);
    assert.match(obj.headers.get('cache-control') ?? '', /^private/);
    const out = await pull(origin.url, 'team/secret:1', reader);
    assert.ok(qemuCompare(src('priv'), out).identical);
  });

  it('through a vmdn edge: the reader pulls it, anonymous clients still get 404, also for objects the edge holds', async () => {
    await anonymousSeesNothingPrivate(edge.url);
    const out = await pull(edge.url, 'team/secret:1', reader);
    assert.ok(qemuCompare(src('priv'), out).identical);
    // an image made private after the edge cached it publicly: the edge holds its objects, and must not hand them out
    const local = caches.at(-1)!;
    await pushImage(local, { url: origin.url, token: ADMIN, local: parseImageRef('team/secret:1'), remote: parseImageRef('later:1') });
    await pull(edge.url, 'later:1');
    assert.ok(edge.store.lookup(onlyPrivate[0]!), 'the edge cached the then-public object');
    await pushImage(local, { url: origin.url, token: ADMIN, local: parseImageRef('team/secret:1'), remote: parseImageRef('later:1'), private: true });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await get(`${edge.url}/v1/objects/${onlyPrivate[0]}`)).status, 404);
    // the reader may have it (team/secret needs it too), from the edge's copy, marked private
    const ok = await get(`${edge.url}/v1/objects/${onlyPrivate[0]}`, reader);
    assert.equal(ok.status, 200);
    assert.match(ok.headers.get('cache-control') ?? '', /^private/);
  });

  it('an edge with its own token: clients without one see what it may read; a client\'s own token wins', async () => {
    const own = await Edge.open({ upstream: origin.url, cacheDir: path.join(t.dir, 'edge-own'), maxSize: 1 << 30, accessTtlMs: 100, http: { ...FAST, token: reader } });
    await own.listen();
    try {
      assert.equal((await get(`${own.url}/v1/images/team/secret/1`)).status, 200);
      assert.equal((await get(`${own.url}/v1/objects/${onlyPrivate[2]}`)).status, 200);
      // the client's (bad) token is what the origin judges, not the edge's
      assert.equal((await get(`${own.url}/v1/images/team/secret/1`, 'vmdn_0123456789abcdef_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')).status, 401);
      assert.equal((await get(`${own.url}/v1/objects/${onlyPrivate[2]}`, ADMIN + 'x')).status, 401);
    } finally {
      await own.close();
    }
  });

  it('through nginx with the documented config: a reader\'s answers are never served to anonymous clients', { skip: hasNginx() ? false : 'nginx not installed' }, async () => {
    const url = nginx!.url;
    const before = await get(`${url}/v1/objects/${onlyPrivate[1]}`);
    assert.equal(before.status, 404);
    // the reader fetches through nginx first...
    for (let i = 0; i < 2; i++) {
      assert.equal((await get(`${url}/v1/objects/${onlyPrivate[1]}`, reader)).status, 200);
      assert.equal((await get(`${url}/v1/images/team/secret/1`, reader)).status, 200);
      assert.equal(((await (await get(`${url}/v1/images`, reader)).json()) as { images: unknown[] }).images.length, 2);
    }
    // ...and nothing it got is served to anyone else
    await anonymousSeesNothingPrivate(url);
    assert.equal((await get(`${url}/v1/objects/${onlyPrivate[1]}`)).status, 404);
  });
});
