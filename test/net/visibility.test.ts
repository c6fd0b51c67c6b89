/**
 * Private names seen by the portal: hiddenNames is asked on every portal
 * request, so its answer is remembered per principal until the names or
 * their privacy change, instead of listing every name each time.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { Visibility } from '../../src/net/server/visibility.js';
import type { Principal } from '../../src/net/server/auth.js';
import { prng, writeRaw } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';

const MiB = 1 << 20;
const anonymous: Principal = { id: 'anonymous', anonymous: true, admin: false, read: [], write: [] };
const reader: Principal = { id: 't1', anonymous: false, admin: false, read: ['secret'], write: [] };

describe('visibility of private names', () => {
  let t: ReturnType<typeof tmpDir>;
  let store: LocalStore;
  let lists = 0;

  before(async () => {
    t = tmpDir('vmdn-visibility-');
    store = await LocalStore.open(path.join(t.dir, 'store'));
    const img = path.join(t.dir, 'small.raw');
    writeRaw(img, 2 * MiB, [{ offset: 0, data: prng(7, MiB) }]);
    for (const name of ['pub:1', 'secret:1']) await importImageFile(store, img, parseImageRef(name), { chunker: DEFAULT_CDC });
    // count the listings the real store answers
    const list = store.names.list.bind(store.names);
    store.names.list = () => { lists++; return list(); };
  });
  after(async () => {
    await store.close();
    t.cleanup();
  });

  it('lists the names once per principal, then answers from memory until something changes', async () => {
    const v = new Visibility(store, store);
    await v.setPrivate('secret', true);
    assert.deepEqual(await v.hiddenNames(anonymous), ['secret']);
    const after1 = lists;
    for (let i = 0; i < 20; i++) assert.deepEqual(await v.hiddenNames(anonymous), ['secret']);
    assert.equal(lists, after1, 'repeated requests list no names');
    assert.deepEqual(await v.hiddenNames(reader), [], 'a token with read scope on the name sees it');
    assert.deepEqual(await v.hiddenNames(anonymous), ['secret'], 'each principal keeps its own answer');

    await v.setPrivate('secret', false);
    assert.deepEqual(await v.hiddenNames(anonymous), [], 'a name made public shows at once');
    await v.setPrivate('pub', true);
    assert.deepEqual(await v.hiddenNames(anonymous), ['pub'], 'a name made private hides at once');
  });
});
