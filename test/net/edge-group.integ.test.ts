/**
 * An edge group (issue 17): 4 vmdn edges behind a real nginx that routes
 * object GETs by `hash $uri consistent` (docs/http-api.md, "An edge group").
 * 16 clients pulling one image at once cost the origin each object once, and
 * each object is cached on exactly one edge, so a site's edges share their
 * cache space instead of each holding the same objects. The same group behind
 * round robin (the control) holds objects on several edges.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { Origin } from '../../src/net/server/origin.js';
import { Edge } from '../../src/net/server/edge.js';
import { pullImage } from '../../src/net/client/pull.js';
import { qemuCompare } from '../helpers/cli.js';
import { sampleDisk } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { hasNginx, nginxEdgeGroupConf, startNginx } from './nginx.js';

const skip = hasNginx() ? false : 'nginx not installed (scripts/ensure-debian-tools.mjs installs it)';
const EDGES = 4;
const CLIENTS = 16;

describe('edge group behind nginx consistent hashing', { skip, timeout: 180_000 }, () => {
  let t: ReturnType<typeof tmpDir>;
  let origin: Origin<LocalStore>;
  let uniqueBytes = 0;
  let digests: string[] = [];
  const src = () => path.join(t.dir, 'src.raw');

  before(async () => {
    t = tmpDir('vmdn-edge-group-');
    sampleDisk(src(), 33);
    const store = await LocalStore.open(path.join(t.dir, 'origin'));
    await importImageFile(store, src(), parseImageRef('img:1'), { chunker: DEFAULT_CDC });
    const objects = store.index.listObjects();
    digests = objects.map((o) => o.digest);
    uniqueBytes = objects.reduce((n, o) => n + o.storedSize, 0);
    origin = new Origin(store);
    await origin.listen();
  });

  after(async () => {
    await origin?.close();
    await origin?.store.close();
    t?.cleanup();
  });

  /** 4 fresh edges over the origin, nginx in front, `clients` concurrent pulls; what each edge holds afterwards. */
  async function run(name: string, roundRobin: boolean, clients = CLIENTS) {
    const edges: Edge[] = [];
    for (let i = 0; i < EDGES; i++) {
      const e = await Edge.open({ upstream: origin.url, cacheDir: path.join(t.dir, name, `edge${i}`), maxSize: 1 << 30 });
      await e.listen();
      edges.push(e);
    }
    const dir = path.join(t.dir, name, 'nginx');
    const nginx = await startNginx(dir, (port) => nginxEdgeGroupConf(dir, port, edges.map((e) => e.url), { roundRobin }));
    const before = origin.stats.objectBytesServed;
    try {
      await Promise.all(Array.from({ length: clients }, async (_, i) => {
        // no codec workers per client: 16 caches x 2 threads would crowd a small CI machine
        const cache = await LocalStore.open(path.join(t.dir, name, `client${i}`), { workers: 0 });
        const out = path.join(t.dir, name, `client${i}.raw`);
        try {
          // what `vmdn pull --no-batch` does: one GET per object, each routed to its edge
          await pullImage({ url: nginx.url, ref: parseImageRef('img:1'), out, cache, concurrency: 8, http: { batches: false, retries: 3, backoffMs: 20 } });
        } finally {
          await cache.close();
        }
        const c = qemuCompare(src(), out);
        assert.ok(c.identical, `client ${i}: ${c.out}`);
      }));
      const held = edges.map((e) => new Set(e.store.cache.index.listObjects().map((o) => o.digest)));
      return { egress: origin.stats.objectBytesServed - before, held, edgeStats: edges.map((e) => e.stats) };
    } finally {
      await nginx.stop();
      for (const e of edges) await e.close();
    }
  }

  it(`${CLIENTS} clients through ${EDGES} hashed edges: origin egress <= 1.05x unique bytes, each object on exactly one edge`, async () => {
    const r = await run('hashed', false);
    const ratio = r.egress / uniqueBytes;
    const counts = r.held.map((h) => h.size);
    console.log(`edge group (hash $uri consistent): ${digests.length} objects, ${uniqueBytes} unique bytes, origin egress ${r.egress} (${ratio.toFixed(3)}x), objects per edge ${counts.join('/')}`);
    assert.ok(ratio <= 1.05, `origin egress ${r.egress} is ${ratio.toFixed(3)}x the ${uniqueBytes} unique bytes`);
    for (const d of digests) {
      const on = r.held.filter((h) => h.has(d)).length;
      assert.equal(on, 1, `object ${d.slice(0, 12)} is cached on ${on} edges`);
    }
    assert.equal(counts.reduce((a, b) => a + b, 0), digests.length, 'the edges hold objects the image does not have');
    // the hash spreads the image over the group rather than onto one edge
    assert.ok(counts.filter((n) => n > 0).length >= 3, `objects per edge ${counts.join('/')}`);
  });

  it('the same group behind round robin (control): objects land on several edges and the origin sends them more than once', async () => {
    // 4 clients are enough to show it, and keep the suite short
    const r = await run('roundrobin', true, 4);
    const multi = digests.filter((d) => r.held.filter((h) => h.has(d)).length > 1).length;
    console.log(`edge group (round robin): origin egress ${(r.egress / uniqueBytes).toFixed(3)}x, objects per edge ${r.held.map((h) => h.size).join('/')}, ${multi} of ${digests.length} objects on several edges`);
    assert.ok(multi > digests.length / 2, `${multi} of ${digests.length} objects on several edges`);
    assert.ok(r.egress > 1.5 * uniqueBytes);
  });
});
