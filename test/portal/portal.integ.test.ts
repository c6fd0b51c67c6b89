/**
 * The portal API against a real `vmdn serve`: publish a small Debian-like
 * qcow2 with the token, edit its metadata (hostile strings too), find it by
 * package and by path, browse and read files, download it as qcow2 and raw
 * (identical by qemu-img compare), resume raw with Range, and check that an
 * unpublished image is invisible without the token everywhere.
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { sh, qemuCompare } from '../helpers/cli.js';
import { ext4Disk } from '../helpers/ext4-disk.js';
import http from 'node:http';
import { startServe, type Served } from '../helpers/serve.js';

const TOKEN = 'portal-test-token';
const t = tmpDir('vmdn-portal-');
let srv: Served;
const qcow2 = path.join(t.dir, 'lab.qcow2');
const OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n';

const auth = { authorization: `Bearer ${TOKEN}` };
async function json(p: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const r = await fetch(srv.url + p, init);
  return { status: r.status, body: await r.json() };
}
const q = (o: Record<string, string>) => new URLSearchParams(o).toString();

/** A Debian-like qcow2: os-release, a dpkg status with `packages`, a binary, `extra` files. */
function makeImage(name: string, packages: string[], extra: Record<string, string> = {}): string {
  const tree = path.join(t.dir, `${name}.tree`);
  for (const d of ['etc', 'var/lib/dpkg', 'usr/bin']) fs.mkdirSync(path.join(tree, d), { recursive: true });
  fs.writeFileSync(path.join(tree, 'etc/os-release'), OS_RELEASE);
  fs.writeFileSync(path.join(tree, 'etc/hostname'), 'lab\n');
  fs.writeFileSync(path.join(tree, 'var/lib/dpkg/status'), packages.map((p, i) => `Package: ${p}\nStatus: install ok installed\nArchitecture: amd64\nVersion: ${i + 1}.0-1\nDescription: test\n`).join('\n'));
  fs.writeFileSync(path.join(tree, 'usr/bin/hello'), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 3]));
  for (const [p, text] of Object.entries(extra)) {
    fs.mkdirSync(path.dirname(path.join(tree, p)), { recursive: true });
    fs.writeFileSync(path.join(tree, p), text);
  }
  const raw = path.join(t.dir, `${name}.raw`);
  ext4Disk(tree, raw, { sizeMiB: 8 });
  const out = path.join(t.dir, `${name}.qcow2`);
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, out]);
  return out;
}

before(async () => {
  makeImage('lab', ['hello', 'libfrob2']);
  srv = await startServe(path.join(t.dir, 'store'), { env: { ...process.env, VMDN_TOKEN: TOKEN } });
});
after(async () => {
  await srv?.stop();
  t.cleanup();
});

it('portal: publish with the token, hidden until published, then searchable, browsable and downloadable', async () => {
  // publishing needs the token
  assert.equal((await json('/v1/portal/uploads', { method: 'POST', body: JSON.stringify({ name: 'lab/vm', tag: 'v1' }) })).status, 401);
  const job = await json('/v1/portal/uploads', { method: 'POST', headers: auth, body: JSON.stringify({ name: 'lab/vm', tag: 'v1' }) });
  assert.equal(job.status, 201);
  const up = await json(`/v1/portal/uploads/${job.body.job}`, { method: 'PUT', headers: auth, body: fs.readFileSync(qcow2) });
  assert.equal(up.status, 201, JSON.stringify(up.body));
  assert.equal(up.body.state, 'done');
  assert.equal(up.body.bytesReceived, fs.statSync(qcow2).size);
  assert.equal((await json(`/v1/portal/uploads/${job.body.job}`, { headers: auth })).body.state, 'done');

  // unpublished: absent for a visitor everywhere, present with the token
  const ref = 'lab/vm:v1';
  const hidden = [
    `/v1/portal/image?${q({ name: 'lab/vm' })}`, `/v1/portal/inside?${q({ ref })}`, `/v1/portal/ls?${q({ ref, path: '/etc' })}`,
    `/v1/portal/file?${q({ ref, path: '/etc/os-release' })}`, `/v1/portal/download?${q({ ref, format: 'raw' })}`, `/v1/portal/shared?${q({ ref })}`,
    '/v1/images/lab/vm/v1',
  ];
  for (const p of hidden) {
    const r = await fetch(srv.url + p);
    assert.equal(r.status, 404, p);
    await r.arrayBuffer();
  }
  assert.equal((await json('/v1/portal/catalog')).body.total, 0);
  assert.equal((await json(`/v1/portal/catalog?${q({ package: 'hello' })}`)).body.total, 0);
  assert.deepEqual((await json('/v1/images')).body.images, []);
  assert.equal((await json('/v1/portal/catalog', { headers: auth })).body.total, 1);
  assert.equal((await json(`/v1/portal/image?${q({ name: 'lab/vm' })}`, { headers: auth })).status, 200);

  // metadata: hostile strings are data, stored and returned as given
  const big = 'x'.repeat(100 * 1024);
  const title = '<script>alert("x")</script> \' " ; DROP TABLE images; --';
  assert.equal((await json(`/v1/portal/image?${q({ name: 'lab/vm' })}`, { method: 'PUT', body: JSON.stringify({ published: true }) })).status, 401);
  const meta = { title, description: big, authors: ['O\'Brien "Bob"', '</textarea>'], doi: '10.1234/x', license: 'CC-BY-4.0', links: [{ label: '<b>home</b>', url: 'https://example.org/?a=1&b=<2>' }], published: true };
  const put = await json(`/v1/portal/image?${q({ name: 'lab/vm' })}`, { method: 'PUT', headers: auth, body: JSON.stringify(meta) });
  assert.equal(put.status, 200, JSON.stringify(put.body).slice(0, 300));
  const { published: _p, ...stored } = meta;
  assert.deepEqual(put.body.metadata, { citation: '', ...stored });
  // invalid UTF-8 inside a JSON string: kept as the replacement character, never an error or raw bytes
  const bad = Buffer.concat([Buffer.from('{"citation": "a'), Buffer.from([0xff, 0xc3]), Buffer.from('b"}')]);
  const r8 = await json(`/v1/portal/image?${q({ name: 'lab/vm' })}`, { method: 'PUT', headers: auth, body: bad });
  assert.equal(r8.body.metadata.citation, 'a\ufffd\ufffdb');
  assert.equal((await json(`/v1/portal/image?${q({ name: 'lab/vm' })}`, { method: 'PUT', headers: auth, body: JSON.stringify({ links: [{ url: 'javascript:alert(1)' }] }) })).status, 400);
  const page = (await json(`/v1/portal/image?${q({ name: 'lab/vm' })}`)).body;
  assert.equal(page.metadata.title, title);
  assert.equal(page.metadata.description.length, big.length);
  assert.deepEqual(page.revisions.map((v: any) => v.tag), ['v1']);
  assert.match(page.commands.pull, /vmdn pull http/);

  // search: by package, package and version, file path, text, OS; what a visitor types stays data
  const names = async (o: Record<string, string>) => (await json(`/v1/portal/catalog?${q(o)}`)).body.images.map((i: any) => i.name);
  assert.deepEqual(await names({ package: 'hello' }), ['lab/vm']);
  assert.deepEqual(await names({ package: 'hello', version: '1.0-1' }), ['lab/vm']);
  assert.deepEqual(await names({ package: 'hello', version: '9' }), []);
  assert.deepEqual(await names({ path: '/usr/bin/hello' }), ['lab/vm']);
  assert.deepEqual(await names({ path: '/usr/bin/nothere' }), []);
  assert.deepEqual(await names({ q: 'scrip' }), ['lab/vm']);
  assert.deepEqual(await names({ os: 'debian', release: 'bookworm' }), ['lab/vm']);
  assert.deepEqual(await names({ package: "' OR 1=1 --" }), []);
  for (const hostile of ['"', 'a AND (b OR', 'NEAR(x y)', '*', '\u0000']) assert.equal((await json(`/v1/portal/catalog?${q({ q: hostile })}`)).status, 200, hostile);

  // inside, browse, read
  const inside = (await json(`/v1/portal/inside?${q({ ref })}`)).body;
  assert.equal(inside.os.id, 'debian');
  assert.deepEqual(inside.packages.map((p: any) => p.name), ['hello', 'libfrob2']);
  const etc = (await json(`/v1/portal/ls?${q({ ref, path: '/etc' })}`)).body;
  assert.deepEqual(etc.entries.map((e: any) => e.name), ['hostname', 'os-release']);
  const f = await fetch(`${srv.url}/v1/portal/file?${q({ ref, path: '/etc/os-release' })}`);
  assert.match(f.headers.get('content-type')!, /^text\/plain/);
  assert.equal(await f.text(), OS_RELEASE);
  const bin = await fetch(`${srv.url}/v1/portal/file?${q({ ref: 'lab/vm', path: '/usr/bin/hello', download: '1' })}`);
  assert.equal(bin.headers.get('content-type'), 'application/octet-stream');
  assert.match(bin.headers.get('content-disposition')!, /attachment/);
  assert.deepEqual(Buffer.from(await bin.arrayBuffer()), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 3]));

  // downloads: qcow2 and raw identical to the upload; raw resumed with Range
  for (const format of ['qcow2', 'raw']) {
    const r = await fetch(`${srv.url}/v1/portal/download?${q({ ref, format })}`);
    assert.equal(r.status, 200);
    const bytes = Buffer.from(await r.arrayBuffer());
    assert.equal(Number(r.headers.get('content-length')), bytes.length);
    const out = path.join(t.dir, `down.${format}`);
    fs.writeFileSync(out, bytes);
    assert.ok(qemuCompare(qcow2, out).identical, `${format}: ${qemuCompare(qcow2, out).out}`);
  }
  const full = fs.readFileSync(path.join(t.dir, 'down.raw'));
  const cut = 1_234_567;
  const part = await fetch(`${srv.url}/v1/portal/download?${q({ ref, format: 'raw' })}`, { headers: { range: `bytes=${cut}-` } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes ${cut}-${full.length - 1}/${full.length}`);
  assert.ok(Buffer.concat([full.subarray(0, cut), Buffer.from(await part.arrayBuffer())]).equals(full));
  const after = (await json(`/v1/portal/image?${q({ name: 'lab/vm' })}`)).body;
  assert.equal(after.downloads, 3);
  assert.deepEqual((await json(`/v1/portal/catalog?${q({ sort: 'downloads' })}`)).body.images.map((i: any) => i.downloads), [3]);

  // taken back: private again, invisible again
  await json(`/v1/portal/image?${q({ name: 'lab/vm' })}`, { method: 'PUT', headers: auth, body: JSON.stringify({ published: false }) });
  assert.equal((await json(`/v1/portal/catalog?${q({ path: '/usr/bin/hello' })}`)).body.total, 0);
  assert.equal((await fetch(`${srv.url}/v1/portal/download?${q({ ref, format: 'qcow2' })}`)).status, 404);
  await json(`/v1/portal/image?${q({ name: 'lab/vm' })}`, { method: 'PUT', headers: auth, body: JSON.stringify({ published: true }) });
});

/** PUT the file in two halves, reading the job between them. */
function slowUpload(job: string, file: string): { mid: Promise<any>; done: Promise<{ status: number; body: any }> } {
  const bytes = fs.readFileSync(file);
  const u = new URL(`${srv.url}/v1/portal/uploads/${job}`);
  let midResolve!: (v: any) => void;
  const mid = new Promise<any>((r) => (midResolve = r));
  const done = new Promise<{ status: number; body: any }>((resolve, reject) => {
    const req = http.request(u, { method: 'PUT', headers: { ...auth, 'content-length': bytes.length } }, (res) => {
      let text = '';
      res.on('data', (b) => (text += b)).on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    const half = bytes.length >> 1;
    req.write(bytes.subarray(0, half), async () => {
      for (let i = 0; i < 100; i++) {
        const j = (await json(`/v1/portal/uploads/${job}`, { headers: auth })).body;
        if (j.bytesReceived >= half) return void (midResolve(j), req.end(bytes.subarray(half)));
        await new Promise((r) => setTimeout(r, 50));
      }
      midResolve(undefined);
      req.end(bytes.subarray(half));
    });
  });
  return { mid, done };
}

it('portal: a second revision with upload progress, its diff against the first, what it shares; --no-portal turns the API off', async () => {
  const v2 = makeImage('lab2', ['hello', 'libfrob2', 'extra'], { 'opt/extra.txt': 'new\n' });
  const job = (await json('/v1/portal/uploads', { method: 'POST', headers: auth, body: JSON.stringify({ name: 'lab/vm', tag: 'v2' }) })).body.job;
  const up = slowUpload(job, v2);
  const mid = await up.mid;
  assert.equal(mid.state, 'receiving');
  assert.equal(mid.bytesExpected, fs.statSync(v2).size);
  assert.ok(mid.bytesReceived > 0 && mid.bytesReceived < mid.bytesExpected, JSON.stringify(mid));
  const done = await up.done;
  assert.equal(done.status, 201, JSON.stringify(done.body));
  assert.ok(done.body.bytesImported > 0);

  const page = (await json(`/v1/portal/image?${q({ name: 'lab/vm' })}`)).body;
  assert.deepEqual(page.revisions.map((v: any) => v.tag), ['v2', 'v1']);
  assert.deepEqual((await json(`/v1/portal/catalog?${q({ package: 'extra' })}`)).body.images.map((i: any) => [i.name, i.tag]), [['lab/vm', 'v2']]);
  assert.equal((await json(`/v1/portal/catalog?${q({ path: '/opt/extra.txt' })}`)).body.total, 1);

  const pk = (await json(`/v1/portal/diff?${q({ a: 'lab/vm:v1', b: 'lab/vm:v2', layer: 'packages' })}`)).body;
  assert.deepEqual(pk.packages.added.map((p: any) => p.name), ['extra']);
  const fl = (await json(`/v1/portal/diff?${q({ a: 'lab/vm:v1', b: 'lab/vm:v2', layer: 'files' })}`)).body;
  const added = fl.volumes.flatMap((v: any) => v.files?.added ?? []).map((e: any) => e.path);
  assert.ok(added.includes('/opt/extra.txt') && added.includes('/opt'), JSON.stringify(added));

  // another image, the first revision again under another name: it shares everything with lab/vm's v1, v2 adds to it
  const other = (await json('/v1/portal/uploads', { method: 'POST', headers: auth, body: JSON.stringify({ name: 'lab/other', tag: 'v1' }) })).body.job;
  assert.equal((await json(`/v1/portal/uploads/${other}`, { method: 'PUT', headers: auth, body: fs.readFileSync(qcow2) })).status, 201);
  await json(`/v1/portal/image?${q({ name: 'lab/other' })}`, { method: 'PUT', headers: auth, body: JSON.stringify({ published: true }) });
  const sh2 = (await json(`/v1/portal/shared?${q({ ref: 'lab/vm:v2' })}`)).body;
  assert.equal(sh2.packages.total, 3);
  assert.equal(sh2.packages.unique, 1, 'extra is only in lab/vm:v2');
  assert.deepEqual(sh2.packages.shared, [{ name: 'lab/other', count: 2 }]);
  assert.deepEqual(sh2.files.shared.map((s: any) => s.name), ['lab/other']);
  assert.equal(sh2.files.total - sh2.files.shared[0].count, sh2.files.unique);
  assert.ok(sh2.files.unique >= 2, 'opt and opt/extra.txt are its own');

  // what vmdn cannot read (a qcow2 cut after its header) fails the job, with the reason; a bad name is refused before any upload
  const junk = (await json('/v1/portal/uploads', { method: 'POST', headers: auth, body: JSON.stringify({ name: 'lab/junk', tag: 'v1' }) })).body.job;
  const bad = await json(`/v1/portal/uploads/${junk}`, { method: 'PUT', headers: auth, body: fs.readFileSync(qcow2).subarray(0, 4096) });
  assert.ok(bad.status >= 400 && bad.status < 500, JSON.stringify(bad.body));
  const failed = (await json(`/v1/portal/uploads/${junk}`, { headers: auth })).body;
  assert.equal(failed.state, 'failed');
  assert.ok(failed.error.code.startsWith('E_'));
  assert.equal((await json('/v1/portal/uploads', { method: 'POST', headers: auth, body: JSON.stringify({ name: '../etc', tag: 'v1' }) })).status, 400);

  const off = await startServe(path.join(t.dir, 'store'), { env: { ...process.env, VMDN_TOKEN: TOKEN }, args: ['--no-portal'] });
  try {
    const r = await fetch(`${off.url}/v1/portal/catalog`);
    assert.equal(r.status, 404);
    assert.equal(((await r.json()) as any).error.code, 'E_NOT_FOUND');
    // without the portal nothing hides images: /v1/images is the store's whole list, as before
    assert.equal((((await (await fetch(`${off.url}/v1/images`)).json()) as any).images.length), 3);
  } finally {
    await off.stop();
  }
});
