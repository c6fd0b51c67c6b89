/**
 * A files-strategy image over the network: push sends the tree objects and
 * file contents, the origin names it only once everything the trees
 * reference is there, pull fetches the trees, then the contents, and
 * rebuilds the filesystem; the result is file-identical.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { Origin } from '../../src/net/server/origin.js';
import { pullImage } from '../../src/net/client/pull.js';
import { pushImage } from '../../src/net/client/push.js';
import { vmdnOk, sh } from '../helpers/cli.js';
import { prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { sparseFile } from '../helpers/disk-checks.js';

const TOKEN = 'files-token-0123456789';
const FAST = { retries: 2, backoffMs: 10, maxBackoffMs: 20 };

describe('files strategy over the network', () => {
  let t: ReturnType<typeof tmpDir>;
  let publisher: LocalStore;
  let origin: Origin;
  const img = () => path.join(t.dir, 'fs.raw');

  before(async () => {
    t = tmpDir('vmdn-files-net-');
    const tree = path.join(t.dir, 'tree');
    fs.mkdirSync(path.join(tree, 'etc'), { recursive: true });
    for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(tree, `data-${i}`), prng(i + 5, 20_000 + i * 3_001));
    fs.writeFileSync(path.join(tree, 'etc', 'conf'), 'key=value\n');
    fs.symlinkSync('../data-1', path.join(tree, 'etc', 'link'));
    sparseFile(img(), 32 << 20);
    sh('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, img()]);
    publisher = await LocalStore.open(path.join(t.dir, 'publisher'));
    await importImageFile(publisher, img(), parseImageRef('fs:1'), { chunker: DEFAULT_CDC, strategy: 'files' });
    origin = new Origin(await LocalStore.open(path.join(t.dir, 'origin')), { token: TOKEN });
    await origin.listen();
  });

  after(async () => {
    await origin.close();
    await origin.store.close();
    await publisher.close();
    t.cleanup();
  });

  it('push, pull and rebuild: file-identical; a second pull from the cache downloads nothing', async () => {
    const pushed = await pushImage(publisher, { url: origin.url, local: parseImageRef('fs:1'), remote: parseImageRef('fs:1'), token: TOKEN, http: FAST });
    assert.ok(pushed.objects > 30, `${pushed.objects} objects: trees and contents, not just the disk chunks`);
    assert.equal(pushed.objectsSent, pushed.objects);
    const again = await pushImage(publisher, { url: origin.url, local: parseImageRef('fs:1'), remote: parseImageRef('fs:1'), token: TOKEN, http: FAST });
    assert.equal(again.objectsSent, 0);
    const cache = await LocalStore.open(path.join(t.dir, 'cache'));
    try {
      const out = path.join(t.dir, 'pulled.raw');
      const r = await pullImage({ url: origin.url, ref: parseImageRef('fs:1'), out, cache, http: FAST });
      assert.equal(r.objects.total, pushed.objects - 1, 'every object but the manifest');
      const d = vmdnOk(path.join(t.dir, 'cache'), ['diff', img(), out, '--layer', 'files']);
      assert.equal(d.identical, true, JSON.stringify(d).slice(0, 1000));
      const second = await pullImage({ url: origin.url, ref: parseImageRef('fs:1'), out: path.join(t.dir, 'second.raw'), cache, http: FAST });
      assert.equal(second.objects.downloaded, 0);
    } finally {
      await cache.close();
    }
  });
});
