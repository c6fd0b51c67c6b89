/**
 * The portal obeys issue 16's scoped tokens and private images: a name under
 * `vmdn serve --private-prefix` is absent from the catalog, search, image page,
 * browse and downloads for anonymous visitors and for tokens without read
 * scope on it, and present for a token that has it; a read-only token cannot
 * edit metadata (the portal's writes need write scope on the name).
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { vmdnOk } from '../helpers/cli.js';
import { ext4Disk } from '../helpers/ext4-disk.js';
import { startServe, type Served } from '../helpers/serve.js';

const t = tmpDir('vmdn-portal-private-');
const store = path.join(t.dir, 'store');
let srv: Served;
const tokens: Record<string, string> = {};

function makeRaw(name: string, pkg: string): string {
  const tree = path.join(t.dir, `${name}.tree`);
  for (const d of ['etc', 'var/lib/dpkg']) fs.mkdirSync(path.join(tree, d), { recursive: true });
  fs.writeFileSync(path.join(tree, 'etc/os-release'), 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian 12"\n');
  fs.writeFileSync(path.join(tree, 'var/lib/dpkg/status'), `Package: ${pkg}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\nDescription: x\n`);
  const raw = path.join(t.dir, `${name}.raw`);
  ext4Disk(tree, raw, { sizeMiB: 8 });
  return raw;
}

before(async () => {
  for (const [name, pkg] of [['lab/public:1', 'pubpkg'], ['team/secret:1', 'secretpkg']] as const) {
    vmdnOk(store, ['import', makeRaw(name.replace(/[/:]/g, '-'), pkg), '--name', name]);
  }
  for (const [who, scope] of [['reader', ['--read', 'team/']], ['other', ['--read', 'lab/']]] as const) {
    tokens[who] = vmdnOk(store, ['token', 'create', ...scope]).token;
  }
  srv = await startServe(store, { args: ['--private-prefix', 'team/'] });
});
after(async () => {
  await srv?.stop();
  t.cleanup();
});

const get = (p: string, who?: string) => fetch(srv.url + p, { headers: who ? { authorization: `Bearer ${tokens[who]}` } : {} });
const names = async (p: string, who?: string) => ((await (await get(p, who)).json()) as { images: Array<{ name: string }> }).images.map((i) => i.name).sort();

it('portal: a private image is absent for visitors and tokens without read scope, present with it', async () => {
  for (const who of [undefined, 'other']) {
    assert.deepEqual(await names('/v1/portal/catalog', who), ['lab/public'], `catalog as ${who ?? 'anonymous'}`);
    assert.deepEqual(await names('/v1/portal/catalog?package=secretpkg', who), [], `search as ${who ?? 'anonymous'}`);
    for (const p of ['/v1/portal/image?name=team/secret', '/v1/portal/ls?ref=team/secret:1&path=/etc', '/v1/portal/download?ref=team/secret:1&format=raw', '/v1/portal/inside?ref=team/secret:1']) {
      const r = await get(p, who);
      assert.equal(r.status, 404, `${p} as ${who ?? 'anonymous'}`);
      await r.arrayBuffer();
    }
  }
  assert.deepEqual(await names('/v1/portal/catalog', 'reader'), ['lab/public', 'team/secret']);
  assert.deepEqual(await names('/v1/portal/catalog?package=secretpkg', 'reader'), ['team/secret']);
  const page = await get('/v1/portal/image?name=team/secret', 'reader');
  assert.equal(page.status, 200);
  await page.arrayBuffer();
  // what another image shares with it is counted only among images the visitor may see
  const shared = (await (await get('/v1/portal/shared?ref=lab/public:1')).json()) as { packages: { shared: Array<{ name: string }> } };
  assert.ok(!JSON.stringify(shared).includes('team/secret'), 'the private image shows in an anonymous shared answer');
  // a read scope does not let the reader change the page
  const edit = await fetch(`${srv.url}/v1/portal/image?name=team/secret`, { method: 'PUT', headers: { authorization: `Bearer ${tokens.reader}`, 'content-type': 'application/json' }, body: JSON.stringify({ title: 'x' }) });
  assert.equal(edit.status, 403);
  await edit.arrayBuffer();
});
