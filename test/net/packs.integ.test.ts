/**
 * Pulls in packs (pack.ts): a second revision of a files-strategy image,
 * pulled into a cache holding the first, moves far fewer bytes in packs than
 * as stored objects, rebuilds file-identical; a pack damaged on the way is
 * refused and its objects come by batch instead; an edge (no packs) still serves.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { Origin } from '../../src/net/server/origin.js';
import { Edge } from '../../src/net/server/edge.js';
import { closeServer, listen } from '../../src/net/wire/http-api.js';
import { PACK_PATH } from '../../src/net/wire/pack.js';
import { pullImage } from '../../src/net/client/pull.js';
import { vmdnOk, sh } from '../helpers/cli.js';
import { prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { sparseFile } from '../helpers/disk-checks.js';

const FAST = { retries: 2, backoffMs: 10, maxBackoffMs: 20 };

/** Text a little like a package's files: lines from a small vocabulary, seeded. */
function text(seed: number, bytes: number): Buffer {
  const words = ['config', 'server', 'listen', 'port', 'relay', 'realm', 'user', 'secret', 'log', 'file', 'verbose', 'fingerprint'];
  let s = seed;
  const out: string[] = [];
  let n = 0;
  while (n < bytes) {
    s = (s * 1103515245 + 12345) >>> 0;
    const line = `${words[s % words.length]}-${(s >>> 8) % 997} = ${words[(s >>> 4) % words.length]}\n`;
    out.push(line);
    n += line.length;
  }
  return Buffer.from(out.join('').slice(0, bytes));
}

describe('pulls in packs', () => {
  let t: ReturnType<typeof tmpDir>;
  let origin: Origin;
  const raw = (v: number) => path.join(t.dir, `v${v}.raw`);

  before(async () => {
    t = tmpDir('vmdn-packs-');
    const tree = path.join(t.dir, 'tree');
    fs.mkdirSync(path.join(tree, 'usr', 'bin'), { recursive: true });
    fs.mkdirSync(path.join(tree, 'etc'), { recursive: true });
    for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(tree, 'usr', 'bin', `tool-${i}`), prng(i + 1, 20_000 + i * 1_000));
    for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(tree, 'etc', `conf-${i}`), text(i, 300 + i * 7));
    fs.writeFileSync(path.join(tree, 'etc', 'status'), text(999, 120_000));
    sparseFile(raw(1), 48 << 20);
    sh('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, raw(1)]);
    // revision 2: a few new binaries sharing most of their bytes, new small files among the old, status grown
    const shared = prng(77, 60_000);
    for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(tree, 'usr', 'bin', `tool-new-${i}`), Buffer.concat([shared, prng(100 + i, 3_000)]));
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(tree, 'etc', `conf-${i * 10}-new`), text(5000 + i, 400));
    fs.appendFileSync(path.join(tree, 'etc', 'status'), text(1000, 3_000));
    sparseFile(raw(2), 48 << 20);
    sh('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, raw(2)]);
    const store = await LocalStore.open(path.join(t.dir, 'origin'));
    for (const v of [1, 2]) await importImageFile(store, raw(v), parseImageRef(`app:${v}`), { chunker: DEFAULT_CDC, strategy: 'files' });
    origin = new Origin(store);
    await origin.listen();
  });

  after(async () => {
    await origin.close();
    await origin.store.close();
    t.cleanup();
  });

  /** A cache holding app:1, then app:2 pulled through `url`. */
  const secondPull = async (name: string, url: string, packs: boolean) => {
    const cache = await LocalStore.open(path.join(t.dir, name));
    try {
      await pullImage({ url: origin.url, ref: parseImageRef('app:1'), cache, http: FAST, packs: false });
      const out = path.join(t.dir, `${name}.raw`);
      const r = await pullImage({ url, ref: parseImageRef('app:2'), out, cache, http: FAST, packs });
      const d = vmdnOk(path.join(t.dir, name), ['diff', raw(2), out, '--layer', 'files']);
      assert.equal(d.identical, true, JSON.stringify(d).slice(0, 800));
      fs.rmSync(out);
      return r;
    } finally {
      await cache.close();
    }
  };

  it('moves a fraction of the stored bytes, file-identical', async () => {
    const plain = await secondPull('plain', origin.url, false);
    const packed = await secondPull('packed', origin.url, true);
    assert.equal(plain.packs.packs, 0);
    assert.ok(packed.packs.packs >= 2, `manifest, trees and the rest: ${JSON.stringify(packed.packs)}`);
    assert.equal(packed.objects.downloaded, plain.objects.downloaded, 'the same objects, only packed');
    assert.ok(packed.bytesDownloaded < 0.6 * plain.bytesDownloaded, `${packed.bytesDownloaded} in packs vs ${plain.bytesDownloaded} stored`);
  });

  it('refuses a damaged pack and takes its objects by batch', async () => {
    let damaged = 0;
    const agent = new http.Agent({ keepAlive: true });
    const proxy = http.createServer((req, res) => {
      const up = http.request(origin.url + req.url, { method: req.method, headers: req.headers, agent }, (ur) => {
        const parts: Buffer[] = [];
        ur.on('data', (b: Buffer) => parts.push(b));
        ur.on('end', () => {
          const body = Buffer.concat(parts);
          if (req.url === PACK_PATH && body.length > 64) {
            body[Math.floor(body.length / 2)] ^= 0x5a;
            damaged++;
          }
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          res.end(body);
        });
      });
      req.pipe(up);
    });
    const url = await listen(proxy, '127.0.0.1', 0);
    try {
      const r = await secondPull('damaged', url, true);
      assert.ok(damaged > 0 && r.packs.rejected === damaged, `${damaged} damaged, ${r.packs.rejected} rejected`);
      assert.equal(r.packs.objects, 0);
    } finally {
      await closeServer(proxy);
      agent.destroy();
    }
  });

  it('through an edge, which has no packs: batches as before', async () => {
    const edge = await Edge.open({ upstream: origin.url, cacheDir: path.join(t.dir, 'edge'), maxSize: 1 << 30 });
    await edge.listen();
    try {
      const r = await secondPull('via-edge', edge.url, true);
      assert.equal(r.packs.packs, 0);
      assert.ok(r.objects.downloaded > 0);
    } finally {
      await edge.close();
    }
  });
});
