/**
 * The behaviour every object store must show: every WritableStore (and the
 * list/delete part for every PrunableStore). Backends and store decorators
 * call `storeSuite(name, factory)` from their own test file.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sha256 } from '../../src/store/digest.js';
import { encodeObject } from '../../src/store/codec.js';
import type { PrunableStore, WritableStore } from '../../src/store/types.js';
import { VmdnError } from '../../src/errors.js';
import { prng } from '../helpers/images.js';

export function storeSuite(name: string, open: () => Promise<{ store: WritableStore | PrunableStore; cleanup: () => Promise<void> }>, opts: { prunable?: boolean } = {}): void {
  describe(`store contract: ${name}`, () => {
    let store: PrunableStore;
    let cleanup: () => Promise<void>;
    before(async () => {
      const o = await open();
      store = o.store as PrunableStore;
      cleanup = o.cleanup;
    });
    after(async () => cleanup());

    it('put then get returns the same bytes, addressed by sha256', async () => {
      const data = prng(11, 100_000);
      const r = await store.put(data);
      assert.equal(r.digest, sha256(data));
      assert.equal(r.added, true);
      assert.equal(r.size, data.length);
      assert.ok(r.storedSize > 0);
      assert.deepEqual(Buffer.from(await store.get(r.digest)), data);
      assert.equal(await store.has(r.digest), true);
      assert.deepEqual(await store.stat(r.digest), { digest: r.digest, size: r.size, storedSize: r.storedSize });
    });

    it('a second put of the same bytes adds nothing', async () => {
      const data = Buffer.from('same bytes twice');
      await store.put(data);
      const again = await store.put(data);
      assert.equal(again.added, false);
    });

    it('concurrent puts of one object write it once', async () => {
      const data = prng(12, 50_000);
      const rs = await Promise.all([store.put(data), store.put(data), store.put(data)]);
      assert.equal(rs.filter((r) => r.added).length, 1);
    });

    it('compresses: stored size of redundant data is small', async () => {
      const r = await store.put(Buffer.from('abc'.repeat(100_000)));
      assert.ok(r.storedSize < 2000, `stored ${r.storedSize}`);
    });

    it('get of an absent object is E_NOT_FOUND', async () => {
      await assert.rejects(store.get('0'.repeat(64)), (e: VmdnError) => e.code === 'E_NOT_FOUND');
      assert.equal(await store.has('0'.repeat(64)), false);
    });

    it('rejects malformed digests', async () => {
      await assert.rejects(store.get('../etc/passwd'), (e: VmdnError) => e.code === 'E_USAGE');
    });

    it('getEncoded returns the zstd bytes; putEncoded verifies before keeping', async () => {
      const data = prng(13, 70_000);
      const { digest } = await store.put(data);
      const enc = await store.getEncoded(digest);
      assert.ok(enc.length > 0);
      const other = prng(14, 1000);
      const good = await store.putEncoded(sha256(other), encodeObject(other));
      assert.equal(good.added, true);
      const liar = prng(15, 1000);
      await assert.rejects(store.putEncoded(sha256(prng(16, 1000)), encodeObject(liar)), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT');
      await assert.rejects(store.putEncoded(sha256(liar), Buffer.from('not zstd at all')), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT');
      assert.equal(await store.has(sha256(prng(16, 1000))), false);
    });

    it('list shows stored objects; delete removes them', { skip: opts.prunable === false && 'not a PrunableStore' }, async () => {
      const { digest } = await store.put(Buffer.from('to be deleted'));
      const listed: string[] = [];
      for await (const o of store.list()) listed.push(o.digest);
      assert.ok(listed.includes(digest));
      await store.delete(digest);
      assert.equal(await store.has(digest), false);
      await assert.rejects(store.get(digest), (e: VmdnError) => e.code === 'E_NOT_FOUND');
    });
  });
}
