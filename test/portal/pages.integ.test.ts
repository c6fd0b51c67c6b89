/**
 * The portal's pages in a real browser (Debian's chromium driven by
 * playwright-core, never a downloaded one) against a real `vmdn serve`: a
 * publisher uploads a qcow2 through the form and describes it; a visitor finds
 * it by a package it contains, browses it, downloads it (qcow2, raw, a raw
 * download resumed with Range), sees the plots; hostile metadata and file
 * names stay text; an unpublished image stays hidden. Screenshots go to
 * test-artifacts/portal/ (gitignored).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { REPO, qemuCompare, sh, vmdnStart, waitFor } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';
import { startServe } from '../helpers/serve.js';
import { ext4Disk } from '../helpers/ext4-disk.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'portal-test-token';
const PKG = 'vmdn-portal-probe';
const ARTIFACTS = path.join(REPO, 'test-artifacts', 'portal');
const EVIL = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2" id=pwned>"'&amp;`;

/** A tiny Debian-like root: os-release, a dpkg status naming PKG, some /etc files, and `extra` names. */
function debianTree(dir: string, pkgVersion: string, extra: (at: (p: string) => string) => void = () => {}): void {
  const at = (p: string) => path.join(dir, p);
  for (const d of ['etc/apt', 'var/lib/dpkg/info', 'usr/bin', 'home/user']) fs.mkdirSync(at(d), { recursive: true });
  fs.writeFileSync(at('etc/os-release'), 'PRETTY_NAME="Portal Test GNU/Linux 12"\nNAME="Portal Test"\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\nID=debian\n');
  fs.writeFileSync(at('etc/hostname'), 'portal-test\n');
  fs.writeFileSync(at('etc/empty.conf'), '');
  fs.writeFileSync(at('etc/apt/sources.list'), 'deb http://deb.debian.org/debian bookworm main\n');
  fs.writeFileSync(at('usr/bin/probe'), Buffer.alloc(300 * 1024, 7));
  const status = [[PKG, pkgVersion], ['base-files', '12.4'], ['libc6', '2.36-9']].map(([n, v]) =>
    `Package: ${n}\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nVersion: ${v}\nDescription: ${n}\n`).join('\n');
  fs.writeFileSync(at('var/lib/dpkg/status'), status);
  fs.writeFileSync(at(`var/lib/dpkg/info/${PKG}.list`), '/.\n/usr\n/usr/bin\n/usr/bin/probe\n');
  extra(at);
}

function qcow2Image(work: string, name: string, fill: (dir: string) => void): string {
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
async function apiPublish(url: string, name: string, file: string, meta?: Record<string, unknown>, tag = 'v1'): Promise<void> {
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

async function download(page: Page, linkName: string, to: string): Promise<void> {
  const [d] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: linkName, exact: true }).click()]);
  await d.saveAs(to);
  assert.equal(await d.failure(), null);
}

/** Nothing a publisher wrote became markup: no script ran, no element was injected, no javascript: link. */
async function assertNoInjection(page: Page, where: string): Promise<void> {
  const got = await page.evaluate(() => ({
    pwned: (window as unknown as { __pwned?: number }).__pwned,
    img: document.querySelectorAll('#pwned, img[src="x"]').length,
    scripts: document.querySelectorAll('script').length,
    jsLinks: [...document.querySelectorAll('a')].filter((a) => a.href.startsWith('javascript:')).length,
  }));
  assert.deepEqual(got, { pwned: undefined, img: 0, scripts: 1, jsLinks: 0 }, where);
}

/** A raw download cut after ~1 MiB, then finished with Range + If-Range: the joined file must be the disk. */
async function resumedRaw(url: string, to: string): Promise<void> {
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

it('portal pages: publish with the form, find by package, browse, download (qcow2, raw, resumed), plots, hostile text, hidden unpublished', { timeout: 240_000 }, async () => {
  const t = tmpDir();
  const work = t.dir;
  const profile = path.join(work, 'chromium-profile');
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const good = qcow2Image(work, 'good', (d) => debianTree(d, '1.2.3-1'));
  const evil = qcow2Image(work, 'evil', (d) => debianTree(d, '9.9-1', (at) => {
    fs.mkdirSync(at('etc/hostile'), { recursive: true });
    fs.writeFileSync(at(`etc/hostile/${EVIL.replace(/\//g, '_')}`), 'x');
    fs.writeFileSync(at(`etc/hostile/${'L'.repeat(250)}`), 'long');
    // a name that is not UTF-8
    fs.writeFileSync(Buffer.concat([Buffer.from(at('etc/hostile/bad-')), Buffer.from([0xff, 0xfe, 0x3c]), Buffer.from('.txt')]), 'bad');
  }));
  const good2 = qcow2Image(work, 'good2', (d) => debianTree(d, '1.3.0-1', (at) => fs.writeFileSync(at('etc/motd'), 'revision 2\n')));
  const hidden = qcow2Image(work, 'hidden', (d) => debianTree(d, '1.0-1'));
  const srv = await startServe(path.join(work, 'store'), { env: { ...process.env, VMDN_TOKEN: TOKEN } });
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    acceptDownloads: true,
    viewport: { width: 1200, height: 900 },
  });
  const dialogs: string[] = [];
  browser.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  // the page's own errors (a script error, a CSP violation) fail the test
  const errors: string[] = [];
  browser.on('weberror', (e) => errors.push(e.error().message));
  browser.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text());
  });
  // the portal loads nothing from other sites
  const foreign: string[] = [];
  browser.on('request', (r) => {
    if (!r.url().startsWith(srv.url) && !r.url().startsWith('data:') && !r.url().startsWith('blob:')) foreign.push(r.url());
  });
  try {
    // hostile metadata, published; another image uploaded and never published
    await apiPublish(srv.url, 'lab/evil', evil, {
      title: EVIL, description: `${EVIL}\n${'D'.repeat(100_000)}`, authors: [EVIL, 'A'.repeat(5000)], citation: EVIL, doi: `10.1/${EVIL}`, license: EVIL,
      links: [{ label: EVIL, url: 'https://example.org/"><script>window.__pwned=4</script>' }], published: true,
    });
    await apiPublish(srv.url, 'lab/hidden', hidden, { title: 'Hidden image', published: false });

    // ---- the publisher: upload through the form, watch the progress, describe the image
    const pub = await browser.newPage();
    await pub.goto(`${srv.url}/publish`);
    await pub.getByLabel('Upload token').fill(TOKEN);
    await pub.getByLabel('Image name').fill('lab/analysis');
    await pub.getByLabel('Revision tag').fill('v1');
    await pub.getByLabel(/^Image file/).setInputFiles(good);
    await pub.getByRole('button', { name: 'Upload' }).click();
    await pub.locator('progress#upload-progress').waitFor();
    await pub.getByText('Imported', { exact: false }).first().waitFor({ timeout: 60_000 });
    assert.equal(await pub.locator('progress#upload-progress').evaluate((p: HTMLProgressElement) => p.value === p.max && p.max > 0), true);
    await pub.getByLabel('Title').fill('Analysis VM');
    await pub.getByLabel('Description').fill('A small Debian-like VM for the portal test.');
    await pub.getByLabel('Authors (one a line)').fill('Ada Lovelace\nAlan Turing');
    await pub.getByLabel('License').fill('CC-BY-4.0');
    await pub.getByLabel(/^DOI/).fill('10.5281/zenodo.123');
    await pub.getByLabel(/^Published/).check();
    await pub.getByRole('button', { name: 'Save' }).click();
    await pub.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
    await pub.close();
    await apiPublish(srv.url, 'lab/analysis', good2, undefined, 'v2');

    // ---- a visitor (a new tab: no token in its sessionStorage), with the keyboard where it matters
    const page = await browser.newPage();
    await page.goto(`${srv.url}/`);
    await page.getByRole('link', { name: 'Analysis VM' }).waitFor();
    assert.equal(await page.getByText('Hidden image').count(), 0, 'an unpublished image is not in the catalog');
    await page.getByText('<script>window.__pwned=1</script>', { exact: false }).first().waitFor();
    await assertNoInjection(page, 'catalog');
    await page.screenshot({ path: path.join(ARTIFACTS, 'portal-catalog.png'), fullPage: true });
    await page.getByText('Search inside images').click();
    await page.getByLabel('Package name').fill(PKG);
    await page.keyboard.press('Enter');
    await page.waitForURL(/package=vmdn-portal-probe/);
    await page.getByText(/^2 images$/).waitFor(); // lab/analysis and lab/evil contain it, lab/hidden is not shown
    // by a file path only the newest revision of lab/analysis has
    await page.goto(`${srv.url}/?path=${encodeURIComponent('/etc/motd')}`);
    await page.getByText(/^1 image$/).waitFor();
    await page.goBack();
    await page.getByText(/^2 images$/).waitFor();
    const link = page.getByRole('link', { name: 'Analysis VM' });
    await link.focus();
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/image\/lab\/analysis/);
    await page.getByRole('heading', { name: 'Analysis VM' }).waitFor();
    // the difference between the revisions: a package upgraded, a file added
    const diff = page.locator('section[aria-labelledby="diff-h"]');
    await diff.getByRole('row', { name: /upgraded vmdn-portal-probe 1\.2\.3-1 1\.3\.0-1/ }).waitFor();
    await diff.getByLabel('Layer').selectOption('files');
    await diff.getByRole('row', { name: /added \/etc\/motd/ }).waitFor();
    // the revision the publisher uploaded
    await page.getByRole('link', { name: 'v1', exact: true }).click();
    await page.waitForURL(/tag=v1/);
    await page.getByRole('heading', { name: 'Get revision v1' }).waitFor();
    await page.getByText('Ada Lovelace, Alan Turing').waitFor();
    await page.getByText('Portal Test GNU/Linux 12').waitFor();
    await page.getByRole('cell', { name: PKG, exact: true }).waitFor();
    // the file browser: /etc, then /etc/os-release shown as text
    await page.locator('#files').getByRole('link', { name: 'etc/', exact: true }).click();
    await page.locator('#files').getByRole('link', { name: 'empty.conf', exact: true }).click();
    await page.locator('section.fileview pre.text').waitFor();
    assert.equal(await page.locator('section.fileview pre.text').textContent(), '');
    await page.locator('#files').getByRole('link', { name: 'os-release', exact: true }).click();
    assert.match(await page.locator('pre.text').textContent({ timeout: 10_000 }) ?? '', /PRETTY_NAME="Portal Test GNU\/Linux 12"/);
    // plots: the shared-with bars (SVG) and the downloads per revision (uPlot canvas)
    await page.locator('section[aria-labelledby="shared-h"] svg rect').first().waitFor();
    assert.ok(await page.locator('section[aria-labelledby="shared-h"] svg rect').count() >= 2);
    assert.ok(await page.locator('.uplot-host canvas').evaluate((c: HTMLCanvasElement) => c.width > 0 && c.height > 0));
    assert.match(await page.locator('.commands').textContent() ?? '', /vmdn pull .*lab\/analysis:v1/);
    assert.match(await page.locator('.commands').textContent() ?? '', /vmdn boot --from .*lab\/analysis:v1/);
    // downloads from the page's links, each the disk that was uploaded
    await download(page, 'qcow2', path.join(work, 'dl.qcow2'));
    await download(page, 'raw', path.join(work, 'dl.raw'));
    for (const f of ['dl.qcow2', 'dl.raw']) {
      const c = qemuCompare(good, path.join(work, f));
      assert.ok(c.identical, `${f}: ${c.out}`);
    }
    const rawHref = await page.getByRole('link', { name: 'raw', exact: true }).getAttribute('href');
    await resumedRaw(new URL(rawHref!, srv.url).href, path.join(work, 'resumed.raw'));
    assert.ok(qemuCompare(good, path.join(work, 'resumed.raw')).identical, 'resumed raw download');
    // the downloads are counted, and plotted per revision
    await page.reload();
    await page.getByRole('heading', { name: 'Get revision v1' }).waitFor();
    await page.getByRole('img', { name: /Downloads per revision: v2 0, v1 [2-9]/ }).waitFor();
    await page.locator('section[aria-labelledby="shared-h"] svg rect').first().waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'portal-image.png'), fullPage: true });

    // ---- hostile metadata and file names render as text
    await page.goto(`${srv.url}/image/lab/evil?path=${encodeURIComponent('/etc/hostile')}`);
    await page.getByRole('heading', { level: 1 }).filter({ hasText: '<script>' }).waitFor();
    await page.locator('#files').getByText('bad-', { exact: false }).waitFor();
    await page.locator('#files').getByText('<img src=x', { exact: false }).first().waitFor();
    await page.getByText('L'.repeat(250)).waitFor();
    await assertNoInjection(page, 'image page');

    // ---- the unpublished image, asked for by name, does not exist for a visitor
    await page.goto(`${srv.url}/image/lab/hidden`);
    await page.getByRole('alert').waitFor();
    assert.equal(await page.getByText('Hidden image').count(), 0);
    assert.equal((await fetch(`${srv.url}/v1/portal/image?name=lab/hidden`)).status, 404);

    // narrow screen: the image page has no horizontal scroll bar
    await page.setViewportSize({ width: 360, height: 740 });
    await page.goto(`${srv.url}/image/lab/analysis`);
    await page.getByRole('heading', { name: 'Analysis VM' }).waitFor();
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'fits a 360 px screen');

    assert.deepEqual(dialogs, [], 'no dialog fired');
    assert.deepEqual(errors, [], 'no script error or CSP violation');
    assert.deepEqual(foreign, [], 'nothing loaded from other sites');
  } finally {
    await browser.close();
    await srv.stop();
    t.cleanup();
  }
});

it('portal static files: hashed assets immutable, page routes fall back to index.html, the API never does', async () => {
  const t = tmpDir();
  const srv = await startServe(path.join(t.dir, 'store'));
  try {
    const index = await fetch(`${srv.url}/image/some/thing`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-type')!, /^text\/html/);
    assert.equal(index.headers.get('cache-control'), 'no-cache');
    const html = await index.text();
    const js = /src="(\/assets\/portal-[A-Z0-9]{8}\.js)"/.exec(html)?.[1];
    assert.ok(js, html);
    const a = await fetch(srv.url + js);
    assert.equal(a.status, 200);
    assert.match(a.headers.get('content-type')!, /^text\/javascript/);
    assert.match(a.headers.get('cache-control')!, /immutable/);
    for (const p of ['/v1/nope', '/v1/portal/nope', '/assets/%2e%2e%2Findex.html', '/favicon.ico', '/etc/passwd']) {
      const r = await fetch(srv.url + p);
      assert.equal(r.status, 404, p);
      assert.match(r.headers.get('content-type')!, /json/, p);
    }
    assert.equal((await fetch(`${srv.url}/health`)).status, 200);
  } finally {
    await srv.stop();
  }
  // --no-portal: neither the pages nor their API
  const off = vmdnStart(path.join(t.dir, 'store'), ['serve', '--listen', '127.0.0.1:0', '--no-portal']);
  try {
    await waitFor(() => /"url"/.test(off.output().stdout), 20_000, 'vmdn serve --no-portal');
    const url = JSON.parse(off.output().stdout).url as string;
    for (const p of ['/', '/publish', '/v1/portal/catalog']) assert.equal((await fetch(url + p)).status, 404, p);
    assert.equal((await fetch(`${url}/v1/images`)).status, 200);
  } finally {
    off.child.kill('SIGTERM');
    await off.done;
    t.cleanup();
  }
});
