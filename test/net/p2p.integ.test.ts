/**
 * P2P among sites (issue 17 item 3, docs/p2p.md): a site's pull cache served
 * by `vmdn serve`, or a site's edge, hands objects to other sites' pulls
 * (`--peer`), every object verified, so the origin serves little; a corrupt
 * or dying peer costs requests, never the image.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { Origin } from '../../src/net/server/origin.js';
import { Edge } from '../../src/net/server/edge.js';
import { pullImage, type PullResult } from '../../src/net/client/pull.js';
import { vmdnAsync } from '../helpers/cli.js';
import { prng, writeRaw } from '../helpers/images.js';
import { startServe, type Served } from '../helpers/serve.js';
import { tmpDir } from '../helpers/tmp.js';
import { flipBit, startProxy } from './proxy.js';

const MiB = 1 << 20;
const ref = parseImageRef('img:1');

/** A TCP forwarder that sends the answers on at `bytesPerSecond` and drops the client as soon as the server side closes. */
async function throttle(target: string, bytesPerSecond: number): Promise<{ url: string; close: () => void }> {
  const t = new URL(target);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const up = net.connect(Number(t.port), t.hostname);
    sockets.add(client).add(up);
    client.pipe(up);
    const queue: Buffer[] = [];
    const tick = setInterval(() => {
      let budget = bytesPerSecond / 20;
      while (queue.length && budget > 0) {
        const b = queue.shift()!;
        if (b.length > budget) queue.unshift(b.subarray(budget));
        client.write(b.subarray(0, budget));
        budget -= b.length;
      }
    }, 50);
    up.on('data', (b: Buffer) => queue.push(b));
    // a dead server: what was still queued is lost, as on a real cut link
    const end = () => {
      clearInterval(tick);
      client.destroy();
      up.destroy();
    };
    up.on('close', end);
    up.on('error', end);
    client.on('close', end);
    client.on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('p2p among sites', { timeout: 240_000 }, () => {
  let t: ReturnType<typeof tmpDir>;
  let origin: Origin<LocalStore>;
  let uniqueBytes = 0;
  let siteA: Served;
  const src = () => path.join(t.dir, 'src.raw');
  const same = (out: string) => assert.ok(fs.readFileSync(out).equals(fs.readFileSync(src())), `${out} differs from the source`);

  /** Pull into a fresh cache `name`, in process; the origin's object bytes it cost. */
  async function pullAt(name: string, peers: string[]): Promise<{ r: PullResult; egress: number; out: string }> {
    const cache = await LocalStore.open(path.join(t.dir, name), { workers: 0 });
    const out = path.join(t.dir, `${name}.raw`);
    const before = origin.stats.objectBytesServed;
    try {
      const r = await pullImage({ url: origin.url, ref, out, cache, peers, concurrency: 8, http: { retries: 3, backoffMs: 20 } });
      return { r, egress: origin.stats.objectBytesServed - before, out };
    } finally {
      await cache.close();
    }
  }

  before(async () => {
    t = tmpDir('vmdn-p2p-');
    // 16 MiB of random data: ~500 objects, two batches per peer, incompressible
    writeRaw(src(), 32 * MiB, [{ offset: MiB, data: prng(17, 16 * MiB) }]);
    const store = await LocalStore.open(path.join(t.dir, 'origin'));
    await importImageFile(store, src(), ref, { chunker: DEFAULT_CDC });
    uniqueBytes = store.index.listObjects().reduce((n, o) => n + o.storedSize, 0);
    origin = new Origin(store);
    await origin.listen();
    // site A: its pull cache is served by a real `vmdn serve` (started before the pull writes into it)
    siteA = await startServe(path.join(t.dir, 'acache'));
  });

  after(async () => {
    await siteA?.stop();
    await origin?.close();
    await origin?.store.close();
    t?.cleanup();
  });

  it('sites B and C pull with site A as a peer (vmdn pull --peer): the origin serves them under 10 % of what it served A', async (tc) => {
    const a = await pullAt('acache', []);
    same(a.out);
    assert.ok(a.egress >= uniqueBytes, `A cost the origin ${a.egress} of ${uniqueBytes} bytes`);
    const before = origin.stats.objectBytesServed;
    const runs = await Promise.all(['b', 'c'].map((s) => vmdnAsync(path.join(t.dir, `${s}cache`), ['pull', origin.url, 'img:1', path.join(t.dir, `${s}.raw`), '--peer', siteA.url])));
    const egress = origin.stats.objectBytesServed - before;
    for (const [i, run] of runs.entries()) {
      assert.equal(run.code, 0, run.stderr);
      const r = JSON.parse(run.stdout) as PullResult;
      assert.equal(r.p2p!.corrupt, 0);
      assert.ok(r.p2p!.bytes >= uniqueBytes * 0.95, `site ${i}: ${r.p2p!.bytes} bytes from the peer`);
      same(path.join(t.dir, `${'bc'[i]}.raw`));
    }
    tc.diagnostic(`origin object bytes: site A ${a.egress}, sites B and C together ${egress} (unique ${uniqueBytes})`);
    assert.ok(egress <= 0.1 * a.egress, `B and C cost the origin ${egress} bytes, A ${a.egress}`);
  });

  it('a peer that sends corrupt objects is detected, counted and bypassed: the image is whole', async (tc) => {
    // every object through this proxy has one bit flipped: still looks like an object
    const bad = await startProxy(siteA.url, { transform: (_d, body) => flipBit(body) });
    try {
      const { r, out, egress } = await pullAt('dcache', [bad.url]);
      same(out);
      assert.ok(r.p2p!.corrupt >= 1, JSON.stringify(r.p2p));
      tc.diagnostic(`corrupt peer: ${r.p2p!.corrupt} corrupt objects, origin ${egress} bytes`);
      assert.equal(r.p2p!.peers[0]!.used, false, 'dropped after its first corrupt object');
      assert.equal(r.p2p!.objects, 0, 'nothing corrupt was kept as delivered');
      assert.ok(egress >= uniqueBytes * 0.95, `the origin served ${egress} bytes`);
    } finally {
      await bad.close();
    }
  });

  it('a peer killed (SIGKILL) mid-transfer: the pull completes from the origin', async (tc) => {
    const peer = await startServe(path.join(t.dir, 'acache'));
    // 4 MiB/s: the 16 MiB take ~4 s through the peer, the kill comes after 1 s
    const slow = await throttle(peer.url, 4 * MiB);
    const kill = setTimeout(() => peer.child.kill('SIGKILL'), 1000);
    try {
      const { r, out } = await pullAt('ecache', [slow.url]);
      same(out);
      assert.equal(peer.child.signalCode, 'SIGKILL', 'the peer was killed during the pull');
      assert.ok(r.p2p!.failures >= 1, JSON.stringify(r.p2p));
      tc.diagnostic(`killed peer: ${r.p2p!.objects} objects from it, ${r.p2p!.origin.objects} from the origin`);
      assert.ok(r.p2p!.objects > 0 && r.p2p!.origin.bytes > 0, `both served: ${JSON.stringify(r.p2p)}`);
    } finally {
      clearTimeout(kill);
      slow.close();
      await peer.stop();
    }
  });

  it('a swarm: three sites each with an edge over the origin, pulling at once with all edges as peers, cost the origin each object once', async (tc) => {
    const edges: Edge[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const e = await Edge.open({ upstream: origin.url, cacheDir: path.join(t.dir, `edge${i}`), maxSize: 1 << 30 });
        await e.listen();
        edges.push(e);
      }
      const before = origin.stats.objectBytesServed;
      const runs = await Promise.all([0, 1, 2].map((i) => pullAt(`swarm${i}`, edges.map((e) => e.url))));
      const egress = origin.stats.objectBytesServed - before;
      for (const run of runs) {
        same(run.out);
        // each edge owns about a third
        for (const p of run.r.p2p!.peers) assert.ok(p.objects > 0, JSON.stringify(run.r.p2p));
      }
      const coalesced = edges.reduce((n, e) => n + e.store.stats.coalesced, 0);
      tc.diagnostic(`origin object bytes ${egress} for ${uniqueBytes} unique (${(egress / uniqueBytes).toFixed(3)}x); edge fills coalesced ${coalesced}`);
      assert.ok(egress <= 1.05 * uniqueBytes, `origin egress ${egress} for ${uniqueBytes} unique bytes`);
    } finally {
      for (const e of edges) await e.close();
    }
  });
});
