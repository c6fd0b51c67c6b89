/**
 * Signed image records over real loopback HTTP: an origin with a signing key
 * (made by `vmdn key generate`), a vmdn edge in front of it, and a
 * man-in-the-middle proxy in front of the edge that rewrites names' answers.
 * The real `minisign -V` accepts what the origin serves; a pull with --trust
 * refuses a swapped manifest, a replayed older record, a stripped signature,
 * an expired record and another key's; the CLI exits 11 for them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { Origin } from '../../src/net/server/origin.js';
import { Edge } from '../../src/net/server/edge.js';
import { RecordSigner } from '../../src/net/server/record-signer.js';
import { RecordTrust } from '../../src/net/client/trust.js';
import { pullImage } from '../../src/net/client/pull.js';
import { warmCache } from '../../src/net/client/warm.js';
import { serveImage } from '../../src/nbd/serve-image.js';
import { closeServer, listen } from '../../src/net/wire/http-api.js';
import { generateKey, parseSecretKey } from '../../src/net/wire/minisign.js';
import { parseRecord } from '../../src/net/wire/image-record.js';
import { VmdnError } from '../../src/errors.js';
import { CLI, qemuCompare, vmdnOk, vmdnStart } from '../helpers/cli.js';
import { prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { hasNginx, nginxConf, startNginx } from './nginx.js';

const run = promisify(execFile);
const FAST = { retries: 2, backoffMs: 10, maxBackoffMs: 20 };
type Body = Record<string, unknown>;

/** The man in the middle: forwards everything, and hands every name's JSON answer to `rewrite`. */
async function startMitm(target: string) {
  const agent = new http.Agent({ keepAlive: true });
  const state = { url: '', rewrite: undefined as ((b: Body, path: string) => Body) | undefined, close: () => closeServer(server) };
  const server = http.createServer((req, res) => {
    const up = http.request(target + req.url, { method: req.method, headers: { ...req.headers, host: new URL(target).host }, agent }, (ur) => {
      const parts: Buffer[] = [];
      ur.on('data', (b: Buffer) => parts.push(b));
      ur.on('end', () => {
        let body = Buffer.concat(parts);
        if (state.rewrite && ur.statusCode === 200 && /^\/v1\/images\/.+\/[^/]+$/.test(req.url ?? '')) {
          body = Buffer.from(JSON.stringify(state.rewrite(JSON.parse(body.toString('utf8')) as Body, req.url!)));
        }
        const headers = { ...ur.headers, 'content-length': String(body.length) };
        delete headers['transfer-encoding'];
        res.writeHead(ur.statusCode ?? 502, headers).end(body);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  state.url = await listen(server, '127.0.0.1', 0);
  return state;
}

describe('signed image records through an edge and a man in the middle', () => {
  const t = tmpDir('vmdn-signed-net-');
  const file = (n: string) => path.join(t.dir, n);
  let store: LocalStore;
  let origin: Origin<LocalStore>;
  let edge: Edge;
  let mitm: Awaited<ReturnType<typeof startMitm>>;
  let signer: RecordSigner;
  const caches: LocalStore[] = [];
  const answers: Body[] = [];
  let trust: RecordTrust;
  const trustDir = () => file('trust');

  const get = async (url: string, ref = 'debian/12'): Promise<Body> => {
    const r = await fetch(`${url}/v1/images/${ref}`, { headers: { 'cache-control': 'no-cache' } });
    assert.equal(r.status, 200);
    return (await r.json()) as Body;
  };
  let nCache = 0;
  const pull = async (url: string, o: { trust?: RecordTrust; out?: string; ref?: string } = {}) => {
    const cache = await LocalStore.open(file(`cache-${nCache++}`));
    caches.push(cache);
    return pullImage({ url, ref: parseImageRef(o.ref ?? 'debian:12'), out: o.out, cache, http: { ...FAST, trust: o.trust } });
  };
  const refused = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
      return 'accepted';
    } catch (err) {
      assert.ok(err instanceof VmdnError, String(err));
      assert.equal(err.code, 'E_UNTRUSTED', err.message);
      return String(err.data.reason);
    }
  };

  before(async () => {
    fs.writeFileSync(file('one.raw'), prng(1, 1 << 20).subarray(0, 1 << 20));
    fs.writeFileSync(file('two.raw'), prng(2, 1 << 20).subarray(0, 1 << 20));
    // the key pair as an operator makes it
    const made = vmdnOk(file('unused-store'), ['key', 'generate', '--out', file('keys/origin')]);
    assert.match(made.keyId, /^[0-9A-F]{16}$/);
    assert.equal(fs.statSync(file('keys/origin.key')).mode & 0o777, 0o600);
    store = await LocalStore.open(file('origin'));
    await importImageFile(store, file('one.raw'), parseImageRef('debian:12'), { chunker: DEFAULT_CDC });
    await importImageFile(store, file('two.raw'), parseImageRef('debian:13'), { chunker: DEFAULT_CDC });
    signer = new RecordSigner(parseSecretKey(fs.readFileSync(file('keys/origin.key'), 'utf8')), store);
    origin = new Origin(store, { signer });
    await origin.listen();
    edge = await Edge.open({ upstream: origin.url, cacheDir: file('edge'), maxSize: 1 << 30, refTtlMs: 0, http: FAST });
    await edge.listen();
    mitm = await startMitm(edge.url);
    trust = RecordTrust.open({ files: [file('keys/origin.pub')], dir: trustDir() })!;
  });

  after(async () => {
    for (const c of caches) await c.close();
    await mitm?.close();
    await edge?.close();
    await origin?.close();
    await store?.close();
    t.cleanup();
  });

  it('minisign -V accepts the record the origin serves, passed through the edge byte for byte', async () => {
    const direct = await get(origin.url);
    const viaEdge = await get(edge.url);
    assert.equal(viaEdge.record, direct.record);
    assert.equal(viaEdge.signature, direct.signature);
    answers.push(direct);
    fs.writeFileSync(file('record.json'), direct.record as string);
    fs.writeFileSync(file('record.json.minisig'), direct.signature as string);
    const r = spawnSync('minisign', ['-V', '-p', file('keys/origin.pub'), '-m', file('record.json')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /Trusted comment: vmdn image record debian:12 seq 1 manifest [0-9a-f]{64} expires /);
    // and refuses it once a byte of the record changed
    fs.writeFileSync(file('record.json'), (direct.record as string).replace('"seq":1', '"seq":9'));
    assert.notEqual(spawnSync('minisign', ['-V', '-q', '-p', file('keys/origin.pub'), '-m', file('record.json')]).status, 0);
  });

  it('nginx as an edge passes the record and its signature through unchanged', { skip: hasNginx() ? false : 'nginx not installed' }, async () => {
    const nginx = await startNginx(file('nginx'), (port) => nginxConf(file('nginx'), port, origin.url));
    try {
      const viaNginx = await get(nginx.url);
      const direct = await get(origin.url);
      assert.equal(viaNginx.record, direct.record);
      assert.equal(viaNginx.signature, direct.signature);
      const r = await pull(nginx.url, { trust: RecordTrust.open({ files: [file('keys/origin.pub')], dir: file('trust-nginx') }) });
      assert.equal(r.manifest, parseRecord(direct.record as string).manifest);
    } finally {
      await nginx.stop();
    }
  });

  it('a pull with --trust takes the signed record through edge and proxy, and remembers its sequence', async () => {
    const r = await pull(mitm.url, { trust, out: file('out.raw') });
    assert.ok(qemuCompare(file('one.raw'), file('out.raw')).identical);
    assert.equal(r.manifest, parseRecord(answers[0]!.record as string).manifest);
    assert.match(fs.readFileSync(path.join(trustDir(), 'seen.json'), 'utf8'), /"seq": 1/);
  });

  it('refuses a swapped manifest, a stripped signature, another key\'s record, an expired one and a replayed older one', async () => {
    const other = (await get(origin.url, 'debian/13')) as Body;
    const first = answers[0]!;
    const cases: Array<[string, (b: Body) => Body]> = [
      ['mismatch', (b) => ({ ...b, manifest: other.manifest })],
      ['bad-signature', (b) => ({ ...b, manifest: other.manifest, record: (b.record as string).replace(b.manifest as string, other.manifest as string) })],
      ['wrong-name', () => other],
      ['unsigned', (b) => ({ ref: b.ref, manifest: other.manifest })],
      ['unsigned', (b) => ({ ...b, signature: undefined })],
    ];
    const foreign = new RecordSigner(generateKey(), undefined);
    const stale = new RecordSigner(signer.key, undefined, { validityMs: 3600_000, now: () => Date.now() - 7200_000 });
    const row = (await store.names.get('debian', '12'))!;
    const foreignRec = await foreign.sign(row);
    const staleRec = await stale.sign(row);
    cases.push(['unknown-key', (b) => ({ ...b, ...foreignRec })], ['expired', (b) => ({ ...b, ...staleRec })]);
    for (const [want, rewrite] of cases) {
      mitm.rewrite = rewrite;
      assert.equal(await refused(pull(mitm.url, { trust })), want, want);
    }
    // warm and nbd/boot --from check the same way (the stripped answer: unsigned)
    mitm.rewrite = (b) => ({ ref: b.ref, manifest: b.manifest });
    assert.equal(await refused(warmCache(mitm.url, [parseImageRef('debian:12')], { trust })), 'unsigned');
    const nbd = (trusted: RecordTrust | undefined) => serveImage({ image: 'debian:12', listen: { socket: file('nbd.sock') }, from: mitm.url, cache: file(`nbd-cache-${nCache++}`), fill: false, trust: trusted });
    assert.equal(await refused(nbd(trust)), 'unsigned');
    await (await nbd(undefined)).close();
    // the name moves on; a client sees the new record; the old one replayed is refused
    mitm.rewrite = undefined;
    await importImageFile(store, file('two.raw'), parseImageRef('debian:12'), { chunker: DEFAULT_CDC });
    const moved = await get(origin.url);
    assert.equal(parseRecord(moved.record as string).seq, 2);
    assert.equal((await pull(mitm.url, { trust })).manifest, other.manifest);
    mitm.rewrite = () => first;
    assert.equal(await refused(pull(mitm.url, { trust })), 'rollback');
    // without --trust the same proxy is believed: this is what the records are for
    assert.equal((await pull(mitm.url)).manifest, first.manifest);
    mitm.rewrite = undefined;
  });

  it('a cache that still holds a name\'s older record is asked again past caches, and the new record taken', async () => {
    const slow = await Edge.open({ upstream: origin.url, cacheDir: file('slow-edge'), maxSize: 1 << 30, refTtlMs: 3600_000, http: FAST });
    try {
      await slow.listen();
      const mine = RecordTrust.open({ files: [file('keys/origin.pub')], dir: file('trust-slow') })!;
      const before = await pull(slow.url, { trust: mine, ref: 'debian:13' });
      await importImageFile(store, file('one.raw'), parseImageRef('debian:13'), { chunker: DEFAULT_CDC });
      const moved = await pull(origin.url, { trust: mine, ref: 'debian:13' });
      assert.notEqual(moved.manifest, before.manifest);
      // the edge would answer seq 1 for an hour; the client's no-cache retry gets seq 2 through it
      assert.equal((await pull(slow.url, { trust: mine, ref: 'debian:13' })).manifest, moved.manifest);
    } finally {
      await slow.close();
    }
  });

  it('the CLI: vmdn serve --sign-key signs, vmdn pull --trust accepts it, and exits 11 for a stripped record', async () => {
    vmdnOk(file('origin-cli'), ['import', file('one.raw'), '--name', 'debian:12']);
    const served = vmdnStart(file('origin-cli'), ['serve', '--listen', '127.0.0.1:0', '--sign-key', file('keys/origin.key')]);
    try {
      let url: string | undefined;
      for (let i = 0; i < 200 && !url; i++) {
        url = /"url":\s*"([^"]+)"/.exec(served.output().stdout)?.[1];
        if (!url) await new Promise((r) => setTimeout(r, 25));
      }
      assert.ok(url, served.output().stderr);
      const env = { VMDN_TRUST_DIR: file('cli-trust') };
      const ok = await vmdnWith(env, file('cli-cache'), ['pull', url!, 'debian:12', file('cli.raw'), '--trust', file('keys/origin.pub')]);
      assert.equal(ok.status, 0, ok.stderr + ok.stdout);
      const strip = await startMitm(url!);
      strip.rewrite = (b) => ({ ref: b.ref, manifest: b.manifest });
      try {
        const bad = await vmdnWith(env, file('cli-cache'), ['pull', strip.url, 'debian:12', file('cli2.raw'), '--trust', file('keys/origin.pub')]);
        assert.equal(bad.status, 11, bad.stderr + bad.stdout);
        assert.equal(bad.json.error.code, 'E_UNTRUSTED');
        assert.equal(bad.json.error.reason, 'unsigned');
      } finally {
        await strip.close();
      }
    } finally {
      served.child.kill('SIGTERM');
      await served.done;
    }
  });
});

/** `vmdn ARGS --store STORE --json` with extra environment (the trust directory), not blocking this process (its proxies). */
async function vmdnWith(env: NodeJS.ProcessEnv, store: string, args: string[]): Promise<{ status: number; stdout: string; stderr: string; json: any }> {
  const r = await run(process.execPath, [CLI, ...args, '--store', store, '--json'], { env: { ...process.env, ...env } })
    .then((o) => ({ status: 0, stdout: o.stdout, stderr: o.stderr }), (e) => ({ status: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }));
  let json: any;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = undefined;
  }
  return { ...r, json };
}
