/**
 * The behaviour every ImageNames implementation must show, with the object
 * store it names images in. Backends call `namesSuite(name, factory)`.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ImageRecord, ImageStore } from '../../src/store/types.js';
import { sha256 } from '../../src/store/digest.js';
import { VmdnError } from '../../src/errors.js';
import { prng } from '../helpers/images.js';

const row = (name: string, tag: string, manifest: string, created = '2026-12-07T00:00:00.000Z'): ImageRecord => ({
  name, tag, manifest, created, virtualSize: 1 << 20, allocatedSize: 4096, dataSize: 4096, format: 'raw',
});

export function namesSuite(name: string, open: () => Promise<{ store: ImageStore; cleanup: () => Promise<void> }>): void {
  describe(`names contract: ${name}`, () => {
    let store: ImageStore;
    let cleanup: () => Promise<void>;
    before(async () => ({ store, cleanup } = await open()));
    after(async () => cleanup());

    it('set then get and list give the record back; an unknown name is undefined', async () => {
      const m = (await store.put(prng(21, 3000))).digest;
      const c = (await store.put(prng(22, 3000))).digest;
      await store.names.set(row('alpha', '1', m), [c, m]);
      assert.deepEqual(await store.names.get('alpha', '1'), row('alpha', '1', m));
      assert.ok((await store.names.list()).some((r) => r.name === 'alpha' && r.tag === '1' && r.manifest === m));
      assert.equal(await store.names.get('alpha', '2'), undefined);
      assert.equal(await store.names.get('nobody', '1'), undefined);
    });

    it('set refuses a name whose references are not all present, and leaves no name behind', async () => {
      const m = (await store.put(prng(23, 3000))).digest;
      const absent = sha256(prng(24, 3000));
      await assert.rejects(store.names.set(row('broken', '1', m), [absent, m]), (e: VmdnError) => e instanceof VmdnError);
      assert.equal(await store.names.get('broken', '1'), undefined);
    });

    it('a name set again points at the new manifest; tags are separate names', async () => {
      const m1 = (await store.put(prng(25, 3000))).digest;
      const m2 = (await store.put(prng(26, 3000))).digest;
      await store.names.set(row('beta', '1', m1), [m1]);
      await store.names.set(row('beta', '2', m1), [m1]);
      await store.names.set(row('beta', '1', m2, '2026-12-08T00:00:00.000Z'), [m2]);
      assert.equal((await store.names.get('beta', '1'))?.manifest, m2);
      assert.equal((await store.names.get('beta', '2'))?.manifest, m1);
    });

    it('remove drops the name only, and says whether there was one', async () => {
      const m = (await store.put(prng(27, 3000))).digest;
      await store.names.set(row('gamma', '1', m), [m]);
      assert.equal(await store.names.remove('gamma', '1'), true);
      assert.equal(await store.names.remove('gamma', '1'), false);
      assert.equal(await store.names.get('gamma', '1'), undefined);
      assert.equal(await store.has(m), true, 'objects stay until gc');
    });

    it('statMany answers for present objects only', async () => {
      const a = await store.put(prng(28, 5000));
      const absent = sha256(prng(29, 10));
      const got = await store.statMany([a.digest, absent]);
      assert.deepEqual([...got.keys()], [a.digest]);
      assert.equal(got.get(a.digest)?.size, 5000);
      assert.equal(got.get(a.digest)?.storedSize, a.storedSize);
    });
  });
}
