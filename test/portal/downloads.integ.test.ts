/**
 * Portal API over a real `vmdn serve`, the parts portal.integ leaves out:
 * streamable formats sent while they are built (before the cache file
 * exists, held back by a client that does not read), with Content-Length
 * where it is known and a Range resume from the cache afterwards; a file
 * whose name is not UTF-8 listed with its exact bytes and read by them; and
 * catalog paging and the downloads sort over 30 images.
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { tmpDir } from '../helpers/tmp.js';
import { spawnSync } from 'node:child_process';
import { sh, qemuCompare } from '../helpers/cli.js';
import { ext4Disk } from '../helpers/ext4-disk.js';
import { startServe, type Served } from '../helpers/serve.js';

const TOKEN = 'portal-dl-token';
const auth = { authorization: `Bearer ${TOKEN}` };
const t = tmpDir('vmdn-portal-dl-');
const store = path.join(t.dir, 'store');
let srv: Served;
const q = (o: Record<string, string>) => new URLSearchParams(o).toString();
const NOT_UTF8 = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2e, 0x74, 0x78, 0x74]); // "café.txt" in Latin-1
const DIR_NOT_UTF8 = Buffer.from([0x64, 0xff]);

async function json(p: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const r = await fetch(srv.url + p, { ...init, headers: { ...auth, ...(init.headers ?? {}) } });
  return { status: r.status, body: await r.json() };
}

/** An ext4 disk of `sizeMiB` with `files` (path bytes -> content) as qcow2. */
function makeImage(name: string, sizeMiB: number, files: Array<[Buffer, Buffer]>): string {
  const tree = Buffer.from(path.join(t.dir, `${name}.tree`));
  for (const [p, data] of files) {
    const full = Buffer.concat([tree, Buffer.from('/'), p]);
    fs.mkdirSync(full.subarray(0, full.lastIndexOf(0x2f)), { recursive: true });
    fs.writeFileSync(full, data);
  }
  const raw = path.join(t.dir, `${name}.raw`);
  ext4Disk(tree.toString(), raw, { sizeMiB });
  const out = path.join(t.dir, `${name}.qcow2`);
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, out]);
  return out;
}

async function upload(name: string, file: string): Promise<void> {
  const job = (await json('/v1/portal/uploads', { method: 'POST', body: JSON.stringify({ name, tag: 'v1' }) })).body.job;
  const up = await json(`/v1/portal/uploads/${job}`, { method: 'PUT', body: fs.readFileSync(file) });
  assert.equal(up.status, 201, JSON.stringify(up.body));
}

/** GET with a client that reads nothing until `hold` has run on the response headers. */
function heldGet(p: string, hold: (res: http.IncomingMessage) => Promise<void>): Promise<{ res: http.IncomingMessage; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http.get(srv.url + p, { headers: auth }, (res) => {
      hold(res).then(() => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b)).on('end', () => resolve({ res, body: Buffer.concat(parts) })).on('error', reject);
      }, reject);
    }).on('error', reject);
  });
}

let big: string;
before(async () => {
  // 64 MiB: far more than the socket buffers between server and client hold, with 6 MiB of data
  big = makeImage('big', 64, [
    [Buffer.from('data/random.bin'), Buffer.from(Array.from({ length: 6 << 20 }, (_, i) => (i * 2654435761) >>> 24))],
    [Buffer.concat([Buffer.from('data/'), NOT_UTF8]), Buffer.from([0, 1, 2, 0xff, 0xfe])],
    [Buffer.concat([Buffer.from('data/'), DIR_NOT_UTF8, Buffer.from('/inner.txt')]), Buffer.from('inner\n')],
  ]);
  srv = await startServe(store, { env: { ...process.env, VMDN_TOKEN: TOKEN } });
  await upload('dl/big', big);
});
after(async () => {
  await srv?.stop();
  t.cleanup();
});

it('portal downloads: vhd-fixed and vmdk stream while built (Content-Length for vhd-fixed), identical, then resume from the cache', async () => {
  const ref = 'dl/big:v1';
  const manifest = (await json(`/v1/portal/image?${q({ name: 'dl/big' })}`)).body.revisions[0].manifest;
  const cached = path.join(store, 'portal-cache', `${manifest}.vhd-fixed`);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  let whileHeld = '';
  const { res, body } = await heldGet(`/v1/portal/download?${q({ ref, format: 'vhd-fixed' })}`, async () => {
    // the client reads nothing: a build that streams stalls on the full socket, one that builds first has finished
    await sleep(1500);
    whileHeld = `cache file exists: ${fs.existsSync(cached)}; temp files: ${fs.readdirSync(path.dirname(cached)).filter((f) => f.includes('.tmp-')).length}`;
  });
  assert.equal(whileHeld, 'cache file exists: false; temp files: 1');
  assert.equal(res.statusCode, 200);
  assert.equal(Number(res.headers['content-length']), body.length);
  const out = path.join(t.dir, 'down.vhd');
  fs.writeFileSync(out, body);
  // a fixed VHD has no header to probe: name its format (vpc)
  const cmp = spawnSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'vpc', big, out], { encoding: 'utf8' });
  assert.equal(cmp.status, 0, cmp.stdout + cmp.stderr);
  assert.ok(fs.existsSync(cached), 'the streamed build filled the cache');
  assert.ok(fs.readFileSync(cached).equals(body), 'the cache holds the streamed bytes');

  // a resume of the streamed copy (If-Range: its ETag) is served from the cache file
  const cut = 5_000_000;
  const part = await fetch(`${srv.url}/v1/portal/download?${q({ ref, format: 'vhd-fixed' })}`, { headers: { ...auth, range: `bytes=${cut}-`, 'if-range': String(res.headers.etag) } });
  assert.equal(part.status, 206);
  assert.ok(Buffer.from(await part.arrayBuffer()).equals(body.subarray(cut)));

  // vmdk (streamOptimized): streamed too, its size known only at the end: chunked, no Content-Length
  const v = await fetch(`${srv.url}/v1/portal/download?${q({ ref, format: 'vmdk' })}`, { headers: auth });
  assert.equal(v.status, 200);
  assert.equal(v.headers.get('content-length'), null);
  fs.writeFileSync(path.join(t.dir, 'down.vmdk'), Buffer.from(await v.arrayBuffer()));
  const vc = qemuCompare(big, path.join(t.dir, 'down.vmdk'));
  assert.ok(vc.identical, vc.out);
  // a second download of it comes from the cache, now with a length
  const again = await fetch(`${srv.url}/v1/portal/download?${q({ ref, format: 'vmdk' })}`, { method: 'HEAD', headers: auth });
  assert.equal(Number(again.headers.get('content-length')), fs.statSync(path.join(t.dir, 'down.vmdk')).size);
  // streamed, cached-range and vmdk downloads each reached the last byte
  assert.equal((await json(`/v1/portal/image?${q({ name: 'dl/big' })}`)).body.downloads, 3);
});

it('portal files: a name that is not UTF-8 is listed with its exact bytes and read by them', async () => {
  const ref = 'dl/big:v1';
  const ls = (await json(`/v1/portal/ls?${q({ ref, path: '/data' })}`)).body;
  const byName = new Map(ls.entries.map((e: any) => [e.name, e]));
  const f: any = byName.get('caf\ufffd.txt'), d: any = byName.get('d\ufffd');
  assert.ok(f && d, JSON.stringify(ls.entries));
  assert.deepEqual(Buffer.from(f.pathB64, 'base64'), Buffer.concat([Buffer.from('/data/'), NOT_UTF8]));
  assert.equal((byName.get('random.bin') as any).pathB64, undefined, 'only names that need it carry bytes');
  const r = await fetch(`${srv.url}/v1/portal/file?${q({ ref, pathB64: f.pathB64, download: '1' })}`, { headers: auth });
  assert.equal(r.status, 200);
  assert.deepEqual(Buffer.from(await r.arrayBuffer()), Buffer.from([0, 1, 2, 0xff, 0xfe]));
  // the lossy text path names nothing
  assert.equal((await fetch(`${srv.url}/v1/portal/file?${q({ ref, path: f.path })}`, { headers: auth })).status, 404);
  // a directory named by bytes lists, and its files open, by bytes
  const inner = (await json(`/v1/portal/ls?${q({ ref, pathB64: d.pathB64 })}`)).body;
  assert.equal(inner.pathB64, d.pathB64);
  assert.deepEqual(inner.entries.map((e: any) => e.name), ['inner.txt']);
  const txt = await fetch(`${srv.url}/v1/portal/file?${q({ ref, pathB64: inner.entries[0].pathB64 })}`, { headers: auth });
  assert.equal(await txt.text(), 'inner\n');
  assert.equal((await json(`/v1/portal/file?${q({ ref, pathB64: '!!' })}`)).status, 400);
});

it('portal catalog: pages hold the next entries without overlap, totals count all, sort=downloads follows counted downloads', async () => {
  const tiny = makeImage('tiny', 8, [[Buffer.from('etc/hostname'), Buffer.from('tiny\n')]]);
  const names = Array.from({ length: 30 }, (_, i) => `page/img-${String(i).padStart(2, '0')}`);
  for (const n of names) await upload(n, tiny);
  const cat = async (o: Record<string, string>) => (await json(`/v1/portal/catalog?${q(o)}`)).body;
  const ours = (c: any) => c.images.map((i: any) => i.name);

  // by name: dl/big sorts first, then page/img-00..29
  const all = ['dl/big', ...names];
  const pages = [];
  for (let page = 1; page <= 4; page++) {
    const c = await cat({ sort: 'name', per: '8', page: String(page) });
    assert.equal(c.total, 31);
    assert.equal(c.page, page);
    assert.equal(c.per, 8);
    pages.push(ours(c));
  }
  assert.deepEqual(pages, [all.slice(0, 8), all.slice(8, 16), all.slice(16, 24), all.slice(24, 31)]);
  assert.deepEqual(ours(await cat({ sort: 'name', per: '8', page: '5' })), []);

  // downloads: each full (or last-byte-reaching) download counts once; HEAD and partial ranges do not
  const size = (await json(`/v1/portal/image?${q({ name: names[0]! })}`)).body.revisions[0].virtualSize;
  const get = async (name: string, headers: Record<string, string> = {}, method = 'GET') => {
    const r = await fetch(`${srv.url}/v1/portal/download?${q({ ref: `${name}:v1`, format: 'raw' })}`, { method, headers: { ...auth, ...headers } });
    await r.arrayBuffer();
    assert.ok(r.ok, `${r.status}`);
  };
  const last = { range: `bytes=${size - 1}-` };
  for (let i = 0; i < 5; i++) await get(names[7]!, last);
  for (let i = 0; i < 4; i++) await get(names[21]!, last);
  await get(names[2]!);
  await get(names[2]!, { range: 'bytes=0-99' }); // not to the end: not counted
  await get(names[29]!, {}, 'HEAD'); // not counted
  // q=page: these 30 only (dl/big's count depends on the tests before)
  const top = await cat({ q: 'page', sort: 'downloads', per: '2' });
  assert.equal(top.total, 30);
  assert.deepEqual(top.images.map((i: any) => [i.name, i.downloads]), [[names[7], 5], [names[21], 4]]);
  const next = await cat({ q: 'page', sort: 'downloads', per: '2', page: '2' });
  // then img-02 (1 download), then ties broken by name: the never-downloaded ones from img-00
  assert.deepEqual(next.images.map((i: any) => [i.name, i.downloads]), [[names[2], 1], [names[0], 0]]);
  const third = await cat({ q: 'page', sort: 'downloads', per: '2', page: '3' });
  assert.deepEqual(third.images.map((i: any) => [i.name, i.downloads]), [[names[1], 0], [names[3], 0]]);
});
