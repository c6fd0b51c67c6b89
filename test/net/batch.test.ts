/** Object batches: the record parser, and POST /v1/objects/batch at an origin and an edge through HttpStore.fetchBatch. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { BatchParser } from '../../src/net/wire/batch.js';
import { closeServer, listen } from '../../src/net/wire/http-api.js';
import { HttpStore, type BatchRecord } from '../../src/net/client/http-store.js';
import { fromArenas } from '../../src/net/client/batch-fetch.js';
import { Origin } from '../../src/net/server/origin.js';
import { Edge } from '../../src/net/server/edge.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { decodeObject } from '../../src/store/codec.js';
import { sha256 } from '../../src/store/digest.js';
import { VmdnError } from '../../src/errors.js';
import { prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';

const record = (digest: string, bytes: Buffer) => {
  const head = Buffer.alloc(36);
  head.write(digest, 0, 32, 'hex');
  head.writeUInt32BE(bytes.length, 32);
  return Buffer.concat([head, bytes]);
};

describe('object batches', () => {
  let t: ReturnType<typeof tmpDir>;
  let origin: Origin;
  let edge: Edge;
  const digests: string[] = [];
  const absent = sha256(Buffer.from('not stored anywhere'));

  before(async () => {
    t = tmpDir('vmdn-batch-');
    const store = await LocalStore.open(path.join(t.dir, 'origin'));
    for (let i = 0; i < 5; i++) digests.push((await store.put(prng(40 + i, 3000 + i * 20_000))).digest);
    origin = new Origin(store);
    await origin.listen();
    edge = await Edge.open({ upstream: origin.url, cacheDir: path.join(t.dir, 'edge'), maxSize: 1 << 30 });
    await edge.listen();
  });

  after(async () => {
    await edge.close();
    await origin.close();
    await origin.store.close();
    t.cleanup();
  });

  it('parses records split anywhere, and refuses records nobody asked for', () => {
    const a = sha256(Buffer.from('a'));
    const b = sha256(Buffer.from('b'));
    const body = Buffer.concat([record(a, Buffer.from('first')), record(b, Buffer.alloc(0))]);
    for (let step = 1; step <= body.length; step++) {
      const got: string[] = [];
      const p = new BatchParser(new Set([a, b]), (d, bytes) => got.push(`${d.slice(0, 4)}:${bytes.toString()}`));
      for (let i = 0; i < body.length; i += step) p.push(body.subarray(i, i + step));
      assert.deepEqual(got, [`${a.slice(0, 4)}:first`, `${b.slice(0, 4)}:`]);
      assert.ok(p.atBoundary);
    }
    // with viewOf: a record inside one chunk is a view of it, one split across chunks a copy; the same records either way
    for (const step of [3, 20, body.length]) {
      const got: string[] = [];
      const p = new BatchParser(new Set([a, b]), (d, bytes) => got.push(`${d.slice(0, 4)}:${bytes.toString()}:${chunks.some((c) => c.buffer === bytes.buffer)}`), undefined, (c, s, e) => c.subarray(s, e));
      const chunks: Buffer[] = [];
      for (let i = 0; i < body.length; i += step) chunks.push(Buffer.from(body.subarray(i, i + step)));
      for (const c of chunks) p.push(c);
      const whole = step === body.length;
      assert.deepEqual(got, [`${a.slice(0, 4)}:first:${whole}`, `${b.slice(0, 4)}::false`]);
    }
    const p = new BatchParser(new Set([a]), () => {});
    assert.throws(() => p.push(record(b, Buffer.from('x'))), /not asked for/);
  });

  for (const server of ['origin', 'edge'] as const) {
    it(`${server}: answers the objects it can get, in request order; the rest are left to the caller`, async () => {
      const hs = new HttpStore(server === 'origin' ? origin.url : edge.url);
      const originRequests = origin.stats.requests;
      const order: string[] = [];
      const asked = [digests[3]!, absent, ...digests.slice(0, 3)];
      const r = await hs.fetchBatch(asked, async (d, enc) => {
        decodeObject(d, enc);
        order.push(d);
      });
      assert.deepEqual(order, asked.filter((d) => d !== absent));
      assert.deepEqual(r, { missing: [absent], corrupt: [] });
      // a cold edge takes its misses in one upstream batch too (plus a GET for the one the origin lacks,
      // and one GET /v1/access: whether the origin has private images)
      if (server === 'edge') assert.equal(origin.stats.requests - originRequests, 3);
      // a copy the caller finds bad comes back as corrupt, to be refetched past caches
      const bad = await hs.fetchBatch([digests[4]!], async (d) => {
        throw new VmdnError('E_CORRUPT_OBJECT', `bad ${d}`);
      });
      assert.deepEqual(bad, { missing: [], corrupt: [digests[4]] });
      assert.equal(hs.stats.corrupt, 1);
      await hs.close();
    });
  }

  it('an edge answers pack requests 404, as docs/http-api.md says (packs are the origin\'s)', async () => {
    const body = JSON.stringify({ digests: digests.slice(0, 2), refs: [] });
    const r = await fetch(`${edge.url}/v1/objects/pack`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assert.equal(r.status, 404);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'E_NOT_FOUND');
  });

  it('groups are views of the response\'s own chunks (a record split between two copied alone): no buffer holds records of two groups', async () => {
    const hs = new HttpStore(origin.url);
    try {
      const groups: BatchRecord[][] = [];
      const r = await hs.fetchBatchGroups(digests, async (records) => {
        groups.push(records);
        return records.map(() => undefined);
      }, { groupBytes: 50_000 });
      assert.deepEqual(r, { missing: [], corrupt: [] });
      assert.deepEqual(groups.flat().map((x) => x.digest), digests, 'every record once, in order');
      const owner = new Map<ArrayBufferLike, number>();
      groups.forEach((g, i) => {
        assert.ok(fromArenas(g));
        for (const x of g) {
          assert.equal(sha256(decodeObject(x.digest, x.encoded)), x.digest);
          assert.equal(owner.get(x.encoded.buffer) ?? i, i, 'a buffer of one group only');
          owner.set(x.encoded.buffer, i);
        }
      });
      assert.ok(groups.length > 1, 'cut into groups');
      // one record per call (no arena): buffers of their own, not to be taken for a group's
      const single: BatchRecord[][] = [];
      await hs.fetchBatchGroups(digests, async (records) => {
        single.push(records);
        return records.map(() => undefined);
      }, { groupBytes: 0 });
      assert.equal(single.length, digests.length);
      assert.ok(single.every((g) => !fromArenas(g)));
    } finally {
      await hs.close();
    }
  });

  it('an origin on a local store sends the body with its length (not chunked): its records and nothing else', async () => {
    const asked = [digests[1]!, absent, digests[2]!];
    const res = await fetch(`${origin.url}/v1/objects/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ digests: asked }) });
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.headers.get('transfer-encoding'), null);
    assert.equal(Number(res.headers.get('content-length')), body.length);
    const got: string[] = [];
    const p = new BatchParser(new Set(asked), (d) => got.push(d));
    p.push(body);
    assert.deepEqual(got, [digests[1], digests[2]]);
    assert.ok(p.atBoundary);
  });

  it('onBody comes once the whole response has arrived, before accept has finished with it (a pull then asks for its next batch)', async () => {
    const hs = new HttpStore(origin.url);
    try {
      let release = () => {};
      const gate = new Promise<void>((res) => (release = res));
      let bodied = false;
      let seen = 0;
      const done = hs.fetchBatchGroups(digests, async (records) => {
        seen += records.length;
        await gate;
        return records.map(() => undefined);
      }, { groupBytes: 50_000, onBody: () => (bodied = true) });
      for (let i = 0; i < 200 && !bodied; i++) await new Promise((res) => setTimeout(res, 10));
      assert.ok(bodied, 'told while accept still waits');
      assert.equal(seen, digests.length, 'every record handed over first');
      release();
      assert.deepEqual(await done, { missing: [], corrupt: [] });
    } finally {
      await hs.close();
    }
  });

  it('a server without batches answers 404: the client stops asking', async () => {
    let hits = 0;
    const s = http.createServer((_req, res) => {
      hits++;
      res.writeHead(404).end();
    });
    const url = await listen(s, '127.0.0.1', 0);
    const hs = new HttpStore(url);
    assert.equal(await hs.fetchBatch(digests, async () => {}), undefined);
    assert.equal(await hs.fetchBatch(digests, async () => {}), undefined);
    assert.equal(hits, 1);
    await hs.close();
    await closeServer(s);
  });
});
