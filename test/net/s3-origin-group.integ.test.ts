/**
 * An origin group on a bucket (issue 17): two `vmdn serve --store s3://...`
 * (real Ceph RGW, test/helpers/rgw.ts) behind a real nginx. An S3 origin
 * keeps uploaded objects in its open pack until the push names its image, so
 * a push split over both origins by round robin cannot complete; the
 * documented front (docs/http-api.md, "An origin group") sends one client's
 * uploads to one origin and spreads reads over both.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { pushImage } from '../../src/net/client/push.js';
import { pullImage } from '../../src/net/client/pull.js';
import { qemuCompare, vmdnOk } from '../helpers/cli.js';
import { sampleDisk } from '../helpers/images.js';
import { startServe, type Served } from '../helpers/serve.js';
import { startRgw, type Rgw } from '../helpers/rgw.js';
import { tmpDir } from '../helpers/tmp.js';
import { hasNginx, nginxOriginGroupConf, startNginx, type Nginx } from './nginx.js';

const skip = hasNginx() ? false : 'nginx not installed (scripts/ensure-debian-tools.mjs installs it)';
const TOKEN = 'test-token-s3-group-0123456789';

describe('two origins on one bucket behind nginx', { skip, timeout: 400_000 }, () => {
  let rgw: Rgw;
  let t: ReturnType<typeof tmpDir>;
  let origins: Served[] = [];
  const fronts: Nginx[] = [];
  const publishers: LocalStore[] = [];
  const src = (seed: number) => path.join(t.dir, `src${seed}.raw`);

  const publisher = async (seed: number) => {
    sampleDisk(src(seed), seed);
    const s = await LocalStore.open(path.join(t.dir, `pub${seed}`));
    publishers.push(s);
    await importImageFile(s, src(seed), parseImageRef('img:1'), { chunker: DEFAULT_CDC });
    return s;
  };
  const push = (s: LocalStore, url: string, name: string) => pushImage(s, { url, token: TOKEN, local: parseImageRef('img:1'), remote: parseImageRef(name), concurrency: 8 });
  const front = async (name: string, stickyUploads: boolean) => {
    const dir = path.join(t.dir, name);
    const n = await startNginx(dir, (port) => nginxOriginGroupConf(dir, port, origins.map((o) => o.url), { stickyUploads }));
    fronts.push(n);
    return n;
  };
  /** One GET per object (--no-batch): many reads, to see them spread over the origins. */
  const pullIdentical = async (url: string, name: string, seed: number) => {
    const cache = await LocalStore.open(path.join(t.dir, `cache-${name.replace(':', '-')}`), { workers: 0 });
    const out = path.join(t.dir, `${name.replace(':', '-')}.raw`);
    try {
      await pullImage({ url, ref: parseImageRef(name), out, cache, http: { retries: 3, backoffMs: 20, batches: false } });
    } finally {
      await cache.close();
    }
    const c = qemuCompare(src(seed), out);
    assert.ok(c.identical, c.out);
  };

  before(async () => {
    rgw = await startRgw();
    t = tmpDir('vmdn-s3-group-');
    const store = rgw.storeUrl('group');
    sampleDisk(src(60), 60);
    vmdnOk(store, ['import', src(60), '--name', 'seed:1']); // creates the bucket
    const env = { ...process.env, VMDN_TOKEN: TOKEN };
    origins = await Promise.all([startServe(store, { env }), startServe(store, { env })]);
  }, { timeout: 240_000 });

  after(async () => {
    for (const p of publishers) await p.close();
    for (const n of fronts) await n.stop();
    for (const o of origins) await o.stop();
    await rgw?.stop();
    t?.cleanup();
  });

  it('plain round robin (control): a push split over the two origins cannot name its image', async () => {
    const n = await front('rr', false);
    await assert.rejects(push(await publisher(61), n.url, 'split:1'), (e: { code?: string }) => e.code === 'E_INCOMPLETE');
  });

  it('uploads kept on one origin: a push through the front is pulled back identical, reads served by both origins', async () => {
    const n = await front('sticky', true);
    await push(await publisher(62), n.url, 'one:1');
    await pullIdentical(n.url, 'one:1', 62);
    const log = fs.readFileSync(path.join(t.dir, 'sticky', 'access.log'), 'utf8').split('\n');
    const readers = new Set(log.filter((l) => l.startsWith('GET /v1/objects/')).map((l) => l.split(' ')[2]));
    assert.equal(readers.size, 2, `object reads went to ${[...readers].join(', ')}`);
  });

  it('concurrent pushes of one name into the two origins end with one winner that both serve', async () => {
    const [p1, p2] = [await publisher(63), await publisher(64)];
    const [r1, r2] = await Promise.all([push(p1, origins[0]!.url, 'race:1'), push(p2, origins[1]!.url, 'race:1')]);
    const names = await Promise.all(origins.map(async (o) => ((await (await fetch(`${o.url}/v1/images/race/1`)).json()) as { manifest?: string }).manifest));
    assert.equal(names[0], names[1], 'the two origins disagree on the name');
    const winner = names[0] === r1.manifest ? 63 : names[0] === r2.manifest ? 64 : undefined;
    assert.ok(winner, `race:1 names ${names[0]}, neither push's manifest`);
    await pullIdentical(fronts[1]!.url, 'race:1', winner);
  });
});
