/** Fixtures for the portal's browser test: tiny Debian-like qcow2 images, publishing through the API, downloads. */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { sh } from './cli.js';
import { ext4Disk } from './ext4-disk.js';

export const CHROMIUM = '/usr/bin/chromium';
export const TOKEN = 'portal-test-token';
export const PKG = 'vmdn-portal-probe';
export const EVIL = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2" id=pwned>"'&amp;`;

/** A tiny Debian-like root: os-release, a dpkg status naming PKG, some /etc files, and `extra` names. */
export function debianTree(dir: string, pkgVersion: string, extra: (at: (p: string) => string) => void = () => {}): void {
  const at = (p: string) => path.join(dir, p);
  for (const d of ['etc/apt', 'var/lib/dpkg/info', 'usr/bin', 'home/user']) fs.mkdirSync(at(d), { recursive: true });
  fs.writeFileSync(at('etc/os-release'), 'PRETTY_NAME="Portal Test GNU/Linux 12"\nNAME="Portal Test"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n');
  fs.writeFileSync(at('etc/hostname'), 'portal-test\n');
  fs.writeFileSync(at('etc/empty.conf'), '');
  fs.writeFileSync(at('etc/apt/sources.list'), 'deb http://mirror.example/debian bookworm main\n');
  fs.writeFileSync(at('usr/bin/probe'), Buffer.alloc(300 * 1024, 7));
  const status = [[PKG, pkgVersion], ['base-files', '12.4'], ['libc6', '2.36-9']].map(([n, v]) =>
    `Package: ${n}\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nVersion: ${v}\nDescription: ${n}\n`).join('\n');
  fs.writeFileSync(at('var/lib/dpkg/status'), status);
  fs.writeFileSync(at(`var/lib/dpkg/info/${PKG}.list`), '/.\n/usr\n/usr/bin\n/usr/bin/probe\n');
  extra(at);
}

export function qcow2Image(work: string, name: string, fill: (dir: string) => void): string {
  const tree = path.join(work, `${name}.tree`);
  fill(tree);
  const raw = path.join(work, `${name}.raw`);
  ext4Disk(tree, raw, { sizeMiB: 24 });
  const q = path.join(work, `${name}.qcow2`);
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, q]);
  fs.rmSync(raw);
  return q;
}

/** Publish through the API as a script would (docs/http-api.md): the browser is kept for the form itself. */
export async function apiPublish(url: string, name: string, file: string, meta?: Record<string, unknown>, tag = 'v1'): Promise<void> {
  const auth = { authorization: `Bearer ${TOKEN}` };
  const r = await fetch(`${url}/v1/portal/uploads`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ name, tag }) });
  assert.equal(r.status, 201, await r.clone().text());
  const { job } = (await r.json()) as { job: string };
  const put = await fetch(`${url}/v1/portal/uploads/${job}`, { method: 'PUT', headers: auth, body: fs.readFileSync(file) });
  assert.equal(put.status, 201, await put.text());
  if (!meta) return;
  const m = await fetch(`${url}/v1/portal/image?name=${encodeURIComponent(name)}`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(meta) });
  assert.equal(m.status, 200, await m.text());
}

export async function download(page: Page, linkName: string, to: string): Promise<void> {
  const [d] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: linkName, exact: true }).click()]);
  await d.saveAs(to);
  assert.equal(await d.failure(), null);
}

/** Nothing a publisher wrote became markup: no script ran, no element was injected, no javascript: link. */
export async function assertNoInjection(page: Page, where: string): Promise<void> {
  const got = await page.evaluate(() => ({
    pwned: (window as unknown as { __pwned?: number }).__pwned,
    img: document.querySelectorAll('#pwned, img[src="x"]').length,
    scripts: document.querySelectorAll('script').length,
    jsLinks: [...document.querySelectorAll('a')].filter((a) => a.href.startsWith('javascript:')).length,
  }));
  assert.deepEqual(got, { pwned: undefined, img: 0, scripts: 1, jsLinks: 0 }, where);
}

/** A raw download cut after ~1 MiB, then finished with Range + If-Range: the joined file must be the disk. */
export async function resumedRaw(url: string, to: string): Promise<void> {
  const ac = new AbortController();
  const first = await fetch(url, { signal: ac.signal });
  assert.equal(first.status, 200);
  const etag = first.headers.get('etag')!;
  assert.ok(etag, 'raw downloads carry an ETag for If-Range');
  const parts: Buffer[] = [];
  let got = 0;
  const reader = first.body!.getReader();
  while (got < 1 << 20) {
    const { value, done } = await reader.read();
    if (done) break;
    parts.push(Buffer.from(value));
    got += value.length;
  }
  ac.abort();
  await reader.cancel().catch(() => {});
  const rest = await fetch(url, { headers: { range: `bytes=${got}-`, 'if-range': etag } });
  assert.equal(rest.status, 206);
  assert.match(rest.headers.get('content-range') ?? '', new RegExp(`^bytes ${got}-`));
  parts.push(Buffer.from(await rest.arrayBuffer()));
  fs.writeFileSync(to, Buffer.concat(parts));
}
