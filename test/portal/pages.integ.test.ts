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
import { chromium } from 'playwright-core';
import { REPO, qemuCompare, vmdnStart, waitFor } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';
import { startServe } from '../helpers/serve.js';
import { CHROMIUM, EVIL, PKG, TOKEN, apiPublish, assertNoInjection, debianTree, download, qcow2Image, resumedRaw } from '../helpers/portal-pages.js';

const ARTIFACTS = path.join(REPO, 'test-artifacts', 'portal');

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
  // generous: CI machines run other tests beside this one
  browser.setDefaultTimeout(60_000);
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
    await pub.getByText(/Server job: done/).waitFor(); // the server's import job, beside the browser's upload progress
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
    // the keyboard: Tab reaches the skip link first, and focus is visible
    await page.keyboard.press('Tab');
    assert.deepEqual(await page.evaluate(() => {
      const a = document.activeElement as HTMLElement;
      return [a.textContent, getComputedStyle(a).outlineStyle !== 'none'];
    }), ['Skip to content', true]);
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
    // a name that is not UTF-8 opens by its exact bytes (pathB64 in the links), shown and downloadable
    await page.locator('#files').getByRole('link', { name: /^bad-/ }).click();
    assert.equal(await page.locator('section.fileview pre.text').textContent({ timeout: 10_000 }), 'bad');
    const badHref = await page.locator('section.fileview h4 a').getAttribute('href');
    assert.match(badHref!, /pathB64=/);
    assert.equal(await (await fetch(new URL(badHref!, srv.url))).text(), 'bad');
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
    await page.screenshot({ path: path.join(ARTIFACTS, 'portal-image-narrow.png') });

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
