/**
 * A client against hostile servers (real node http servers on 127.0.0.1):
 * decompression bombs, endless and oversized bodies, slow drips, redirects,
 * deeply nested JSON and invalid digests each end quickly, in a clear typed
 * error, with the client's memory bounded.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { closeServer, listen } from '../../src/net/wire/http-api.js';
import { HttpStore } from '../../src/net/client/http-store.js';
import { fetchPack } from '../../src/net/client/pack-client.js';
import { pullImage } from '../../src/net/client/pull.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { encodeObject } from '../../src/store/codec.js';
import { sha256 } from '../../src/store/digest.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { VmdnError } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { measured, rleFrame } from '../helpers/zstd-frames.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
const FAST = { retries: 2, backoffMs: 10, maxBackoffMs: 20 };
const ref = parseImageRef('app:1');
const digest = sha256(Buffer.from('a'));

/** Serve `handler` on a fresh port while `fn` runs. */
async function against<T>(handler: Handler, fn: (url: string) => Promise<T>): Promise<T> {
  const server = http.createServer(handler);
  const url = await listen(server, '127.0.0.1', 0);
  try {
    return await fn(url);
  } finally {
    await closeServer(server);
  }
}

/** As fast as the client reads, forever. */
function endless(res: http.ServerResponse, chunk = Buffer.alloc(64 << 10, 0x20)): void {
  const write = () => {
    while (!res.destroyed && res.write(chunk));
    if (!res.destroyed) res.once('drain', write);
  };
  write();
}

/** One byte every `ms`, forever: never idle long enough for an idle timeout. */
function drip(res: http.ServerResponse, ms: number): void {
  const t = setInterval(() => res.write('x'), ms);
  res.on('close', () => clearInterval(t));
}

/** The outcome of `p`, or 'hung' after `ms`: a broken client must fail the test, not hang it. */
const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<'hung'>((r) => setTimeout(() => r('hung'), ms).unref())]);

const isCode = (code: string, re?: RegExp) => (e: unknown) => e instanceof VmdnError && e.code === code && (!re || re.test(e.message));

describe('a client against hostile servers', () => {
  let t: ReturnType<typeof tmpDir>;
  before(() => {
    t = tmpDir('vmdn-hostile-');
  });
  after(() => t.cleanup());

  it('pull: a 1-byte manifest frame followed by 2 GiB of zeros is refused before decoding, in bounded memory', async () => {
    const bomb = Buffer.concat([encodeObject(Buffer.from('a')), rleFrame(2 ** 31, false)]);
    const cache = await LocalStore.open(path.join(t.dir, 'cache-bomb'));
    try {
      const m = await against((req, res) => {
        if (req.url === '/v1/images/app/1') return res.end(JSON.stringify({ manifest: digest }));
        if (req.url === `/v1/objects/${digest}`) return res.writeHead(200, { 'content-length': bomb.length }).end(bomb);
        res.writeHead(404).end();
      }, (url) => measured(() => within(pullImage({ url, ref, cache, http: FAST }), 20_000)));
      assert.notEqual(m.result, 'hung');
      assert.ok(isCode('E_CORRUPT_OBJECT')(m.error), String(m.error));
      assert.ok(m.ms < 5000, `${m.ms} ms`);
      assert.ok(m.growth < 100 << 20, `RSS grew ${Math.round(m.growth / 2 ** 20)} MiB`);
    } finally {
      await cache.close();
    }
  });

  it('an endless body on a name lookup is cut at what a lookup can be', { timeout: 30_000 }, async () => {
    const m = await against((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      endless(res);
    }, (url) => measured(() => within(new HttpStore(url, FAST).resolve(ref), 10_000)));
    assert.notEqual(m.result, 'hung');
    assert.ok(isCode('E_UNREACHABLE', /larger than this request can return/)(m.error), String(m.error));
    assert.ok(m.growth < 64 << 20, `RSS grew ${Math.round(m.growth / 2 ** 20)} MiB`);
  });

  it('an object or a pack body larger than its request can be is refused without being held', { timeout: 30_000 }, async () => {
    const huge = 300 << 20;
    const store = (url: string) => new HttpStore(url, FAST);
    const m = await against((req, res) => {
      if (req.method === 'POST') res.writeHead(200, { 'content-type': 'application/vnd.vmdn.pack', 'x-vmdn-pack-refs': '0' });
      else res.writeHead(200, { 'content-length': huge });
      endless(res);
    }, (url) => measured(async () => {
      const object = await within(store(url).get(digest).catch((e: unknown) => e), 10_000);
      const pack = await within(fetchPack(store(url), [digest], [], async () => new Uint8Array()).catch((e: unknown) => e), 10_000);
      return { object, pack };
    }));
    assert.ok(isCode('E_UNREACHABLE', /larger than this request can return/)(m.result!.object), String(m.result!.object));
    assert.ok(isCode('E_UNREACHABLE', /larger than this request can return/)(m.result!.pack), String(m.result!.pack));
    assert.ok(m.growth < 96 << 20, `RSS grew ${Math.round(m.growth / 2 ** 20)} MiB`);
  });

  it('a server dripping a byte now and then fails the request at its deadline, with a timeout', { timeout: 60_000 }, async () => {
    // What this checks is the client's own deadline, not how fast the machine is: each attempt ends
    // by the deadline's timer (its message, which the idle timeout's plain 'timed out' lacks), the
    // client hangs up every attempt (the drips never end on their own), and the retries are the
    // configured ones. No bound on the wall-clock time of the whole: on shared cores it measured the load.
    const opts = { ...FAST, deadlineMs: 1000 };
    /** Each request the server saw, and whether the client hung up on it (the server never ends an answer). */
    const seen: Array<{ kind: string; cut: Promise<boolean> }> = [];
    const r = await against((req, res) => {
      const kind = req.method === 'POST' ? 'batch' : req.url!.startsWith('/v1/objects/') ? 'object' : 'lookup';
      seen.push({ kind, cut: new Promise((done) => res.on('close', () => done(!res.writableEnded))) });
      // an object declares its (allowed) size; the name lookup and the batch stream theirs
      if (kind === 'object') res.writeHead(200, { 'content-length': 1 << 20 });
      else res.writeHead(200, { 'content-type': kind === 'batch' ? 'application/vnd.vmdn.objects' : 'application/json' });
      drip(res, 200);
    }, async (url) => {
      // a guard against a hang, far beyond the attempts' deadlines: the drips alone would go on forever
      const guard = 15 * opts.deadlineMs;
      const lookup = await within(new HttpStore(url, opts).resolve(ref).catch((e: unknown) => e), guard);
      const object = await within(new HttpStore(url, opts).get(digest).catch((e: unknown) => e), guard);
      // a batch that does not finish in time leaves its objects to single requests
      const batch = await within(new HttpStore(url, opts).fetchBatch([digest], async () => {}), guard);
      // the server sees the last hang-up a moment after the client made it
      const cut = await within(Promise.all(seen.map((x) => x.cut)), 5 * opts.deadlineMs);
      return { lookup, object, batch, cut };
    });
    // the deadline's message: the bytes that came, the attempt's time (never under the deadline), the deadline itself
    const byDeadline = (e: unknown) => {
      const s = e instanceof VmdnError && new RegExp(`after ${opts.retries} attempts: timed out: \\d+ bytes in ([\\d.]+) s, slower than \\d+ bytes/s after ${opts.deadlineMs} ms$`).exec(e.message);
      return !!s && Number(s[1]) >= opts.deadlineMs / 1000;
    };
    assert.ok(isCode('E_UNREACHABLE')(r.lookup) && byDeadline(r.lookup), String(r.lookup));
    assert.ok(isCode('E_UNREACHABLE')(r.object) && byDeadline(r.object), String(r.object));
    assert.deepEqual(r.batch, { missing: [digest], corrupt: [] });
    // two attempts each for the lookup and the object (FAST.retries), one for the batch; all cut by the client
    assert.deepEqual(seen.map((x) => x.kind), ['lookup', 'lookup', 'object', 'object', 'batch']);
    assert.deepEqual(r.cut, [true, true, true, true, true]);
  });

  it('a busy origin (503, Retry-After) is not waited for: the pack is left to batches at once', async () => {
    let asked = 0;
    await against((req, res) => {
      asked++;
      req.resume();
      res.writeHead(503, { 'retry-after': '2', 'content-type': 'application/json' }).end('{"error":{"code":"E_UNREACHABLE","message":"packs are busy"}}');
    }, async (url) => {
      const t0 = Date.now();
      assert.equal(await fetchPack(new HttpStore(url, { retries: 5 }), [digest], [], async () => new Uint8Array()), undefined);
      assert.equal(asked, 1);
      assert.ok(Date.now() - t0 < 1000, `${Date.now() - t0} ms`);
    });
  });

  it('redirects are refused, naming where they point', async () => {
    await against((_req, res) => res.writeHead(301, { location: 'http://elsewhere.example/v1/images/app/1' }).end(), async (url) => {
      await assert.rejects(new HttpStore(url, FAST).resolve(ref), isCode('E_UNREACHABLE', /HTTP 301 redirect to http:\/\/elsewhere\.example.*does not follow redirects/));
      await assert.rejects(new HttpStore(url, FAST).get(digest), isCode('E_UNREACHABLE', /redirect/));
    });
  });

  it('deeply nested JSON and a manifest that is not a digest are clear errors', async () => {
    // within what a lookup may return, deeper than anything walks safely
    const deep = '['.repeat(20_000) + ']'.repeat(20_000);
    const answers: Record<string, [number, string]> = {
      '/v1/images/deep/1': [200, `{"manifest": ${deep}}`],
      '/v1/images/path/1': [200, '{"manifest": "../../../etc/passwd"}'],
      '/v1/images/none/1': [200, 'null'],
      '/v1/images/error/1': [404, `{"error": ${deep}}`],
    };
    await against((req, res) => {
      const [status, body] = answers[req.url!] ?? [500, ''];
      res.writeHead(status, { 'content-type': 'application/json' }).end(body);
    }, async (url) => {
      const s = new HttpStore(url, FAST);
      for (const name of ['deep', 'path', 'none']) await assert.rejects(s.resolve(parseImageRef(`${name}:1`)), isCode('E_MANIFEST', /no valid manifest digest/), name);
      await assert.rejects(s.resolve(parseImageRef('error:1')), isCode('E_NOT_FOUND'));
    });
  });
});
