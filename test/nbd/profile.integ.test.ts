/**
 * Boot profiles end to end, with real processes and no VM: `vmdn nbd
 * --record-profile` under a seeded sequence of qemu-io reads stores exactly
 * the objects read, in order; gc keeps the profile; `vmdn push` carries it to
 * a real `vmdn serve` (and an edge passes it through); a fresh `vmdn nbd
 * --from` prefetches the profile's objects first, so a replay of the same
 * reads waits for nothing; a broken profile at the origin is a warning and
 * the fill still completes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';
import { vmdn, vmdnOk, waitFor } from '../helpers/cli.js';
import { startServe, type Served } from '../helpers/serve.js';
import { qemuIo, startNbd } from '../helpers/nbd-run.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { hasQemuTools } from './raw-client.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { resolveImage } from '../../src/images/names.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { decodeProfile } from '../../src/model/profile.js';
import { diskOrder } from '../../src/nbd/fill.js';
import { Edge } from '../../src/net/server/edge.js';
import { HttpStore } from '../../src/net/client/http-store.js';
import type { Manifest } from '../../src/model/manifest.js';

const skip = hasQemuTools() ? false : 'qemu-img/qemu-io not installed (scripts/ensure-debian-tools.mjs installs them)';
const TOKEN = 'profile-test-token';

async function withStore<T>(dir: string, fn: (s: LocalStore) => Promise<T>): Promise<T> {
  const s = await LocalStore.open(dir);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** The objects reads at `offsets` (4 KiB each) touch, each once, in the order first touched. */
function expectedOrder(m: Manifest, offsets: number[]): string[] {
  const seen = new Set<string>();
  for (const off of offsets) {
    for (const [o, l, d] of m.chunks) if (o < off + 4096 && o + l > off) seen.add(d);
  }
  return [...seen];
}

describe('boot profiles: record, gc, push, prefetch', { skip }, () => {
  const t = tmpDir('vmdn-nbd-profile-');
  const pub = path.join(t.dir, 'pub');
  const originStore = path.join(t.dir, 'origin');
  const disk = path.join(t.dir, 'disk.raw');
  const seed = seedFrom('VMDN_PROFILE_SEED');
  const rnd = mulberry32(seed);
  // scattered reads, the late part of the disk first (disk order would reach it last), one in the hole
  const offsets = [...Array.from({ length: 10 }, () => Math.floor((4 + rnd() * 4) * (1 << 20) / 512) * 512),
    ...Array.from({ length: 4 }, () => Math.floor(rnd() * (4 << 20) / 512) * 512), 12 << 20];
  const reads = offsets.map((o) => `read ${o} 4k`);
  let manifest: Manifest;
  let mdig = '';
  let profile = '';
  let order: string[] = [];
  let origin: Served;
  let n = 0;
  const sock = () => path.join(t.dir, `nbd${++n}.sock`);
  const uri = (s: string) => `nbd+unix:///img:1?socket=${s}`;

  before(async () => {
    fs.writeFileSync(disk, prng(29, 8 << 20));
    fs.truncateSync(disk, 16 << 20);
    vmdnOk(pub, ['import', disk, '--name', 'img:1']);
    ({ digest: mdig, manifest } = await withStore(pub, (s) => resolveImage(s, parseImageRef('img:1'))));
    order = expectedOrder(manifest, offsets);
    origin = await startServe(originStore, { env: { ...process.env, VMDN_TOKEN: TOKEN } });
  });
  after(async () => {
    await origin?.stop();
    t.cleanup();
  });

  it(`--record-profile stores the objects in the order the reads first touched them (seed ${seed}); images shows it; gc keeps it`, { timeout: 120_000 }, async () => {
    const s0 = sock();
    const s = await startNbd(pub, ['img:1', '--socket', s0, '--record-profile']);
    let r;
    try {
      r = qemuIo(uri(s0), reads);
      assert.equal(r.status, 0, r.out);
    } finally {
      await s.stop();
    }
    const saved = s.lines('profile').at(-1);
    assert.equal(saved?.objects, order.length, s.output().stdout + s.output().stderr);
    profile = saved.profile;
    await withStore(pub, async (st) => {
      assert.equal(await st.getProfile(mdig), profile);
      const p = decodeProfile(await st.get(profile), 'test', { manifest: mdig, chunks: new Set(manifest.chunks.map((c) => c[2])) });
      assert.deepEqual(p.reads.map((x) => x[1]), order);
    });
    // --no-profile is for --from
    assert.equal(vmdn(pub, ['nbd', 'img:1', '--socket', sock(), '--no-profile']).status, 2);
    const images = vmdnOk(pub, ['images']);
    assert.equal(images.images[0].profile, profile);
    vmdnOk(pub, ['gc']);
    await withStore(pub, async (st) => {
      assert.equal(await st.getProfile(mdig), profile);
      assert.ok(await st.has(profile), 'gc deleted the profile of a named image');
    });
  });

  it('push carries the profile to the origin; the origin and an edge name it for the manifest', { timeout: 60_000 }, async () => {
    assert.ok(profile, 'needs the recording above');
    process.env.VMDN_TOKEN = TOKEN;
    let pushed;
    try {
      pushed = vmdnOk(pub, ['push', 'img:1', origin.url, '--name', 'img:1']);
    } finally {
      delete process.env.VMDN_TOKEN;
    }
    assert.equal(pushed.profile, profile);
    const r = await fetch(`${origin.url}/v1/profiles/${mdig}`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { manifest: mdig, profile });
    assert.equal((await fetch(`${origin.url}/v1/profiles/${'0'.repeat(64)}`)).status, 404);
    // uploads need the token, and a profile that is one of this image's
    assert.equal((await fetch(`${origin.url}/v1/profiles/${mdig}`, { method: 'PUT', body: JSON.stringify({ profile }) })).status, 401);
    const put = (p: string) => fetch(`${origin.url}/v1/profiles/${mdig}`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ profile: p }) });
    assert.equal((await put(mdig)).status, 400, 'the manifest accepted as its own profile');
    assert.equal((await put('0'.repeat(64))).status, 409);
    assert.equal((await (await fetch(`${origin.url}/v1/profiles/${mdig}`)).json()).profile, profile);
    const edge = await Edge.open({ upstream: origin.url, cacheDir: path.join(t.dir, 'edge'), maxSize: 1 << 30 });
    await edge.listen();
    const client = new HttpStore(edge.url);
    try {
      assert.equal(await client.profile(mdig), profile);
      assert.equal(await client.profile('0'.repeat(64)), undefined);
    } finally {
      await client.close();
      await edge.close();
    }
  });

  it('--from prefetches the profile first: a replay of the recorded reads waits for no object (and, recorded there, gives the same profile)', { timeout: 180_000 }, async () => {
    assert.ok(profile, 'needs the push above');
    const cache = path.join(t.dir, 'cache-replay');
    const s0 = sock();
    // one batch per lane per 700 ms: the fill is still early in the disk when the profile is in
    const s = await startNbd(cache, ['img:1', '--from', origin.url, '--cache', cache, '--socket', s0, '--record-profile'], { VMDN_NBD_FILL_PAUSE_MS: '700' });
    try {
      assert.equal(s.doc().profile, profile);
      await waitFor(() => s.last().profilePrefetched === order.length, 60_000, 'the profile prefetch');
      const at = s.last();
      assert.equal(at.profileObjects, order.length);
      // in disk order the fill would have had to pass the profile's last object first
      const disk = diskOrder(manifest);
      const lastNeeded = Math.max(...order.map((d) => disk.indexOf(d)));
      assert.ok(at.prefilledObjects <= lastNeeded, `${at.prefilledObjects} prefilled before the profile was in; disk order needs ${lastNeeded + 1}`);
      // the profile, plus what two lanes fetch in the counters' 1 s lag
      assert.ok(at.prefilledObjects <= order.length + 64, `${at.prefilledObjects} prefilled, profile ${order.length}, image ${disk.length}`);
      assert.equal(at.fillDone, false);
      const r = qemuIo(uri(s0), reads);
      assert.equal(r.status, 0, r.out);
      await waitFor(() => s.last().profileHits === order.length, 5000, 'the hits to show');
      assert.equal(s.last().demandObjects, 0, JSON.stringify(s.last()));
      const metrics = s.doc().metrics;
      assert.equal(metrics, null);
      await waitFor(() => s.last().fillDone === true, 120_000, 'the fill');
    } finally {
      await s.stop();
    }
    // recorded in the cache, where the fill named the image: the same objects in the same order (other times)
    const again = s.lines('profile').at(-1)?.profile;
    assert.ok(again, s.output().stderr);
    vmdnOk(cache, ['gc']);
    await withStore(cache, async (st) => {
      assert.equal(await st.getProfile(mdig), again);
      assert.deepEqual(decodeProfile(await st.get(again), 'cache').reads.map((x) => x[1]), order);
    });
  });

  it('a truncated profile at the origin is refused with a warning; the fill goes in disk order and completes', { timeout: 120_000 }, async () => {
    assert.ok(profile, 'needs the push above');
    const good = profile;
    const bad = await withStore(originStore, async (st) => {
      const bytes = await st.get(good);
      const { digest } = await st.put(bytes.subarray(0, bytes.length >> 1));
      await st.setProfile(mdig, digest);
      return digest;
    });
    const cache = path.join(t.dir, 'cache-bad');
    // the origin keeps a name's answer for a few seconds; the pointer is read straight from its store
    const s = await startNbd(cache, ['img:1', '--from', origin.url, '--cache', cache, '--socket', sock(), '--readonly']);
    try {
      await waitFor(() => s.last().fillDone === true, 60_000, 'the fill');
      assert.match(s.output().stderr, new RegExp(`boot profile ${bad.slice(0, 12)} refused, prefetching in disk order`));
      assert.equal(s.doc().profile, null);
      assert.equal(s.last().profileObjects, 0);
      assert.equal(s.last().profilePrefetched, 0);
      assert.ok(s.alive());
    } finally {
      await s.stop();
      await withStore(originStore, (st) => st.setProfile(mdig, good));
    }
  });
});
