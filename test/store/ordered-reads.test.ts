import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LocalStore } from '../../src/store/local/local-store.js';
import { VmdnError } from '../../src/errors.js';
import { flipObjectByte } from '../helpers/object-bytes.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';

/** Objects of assorted sizes, the first ones loose (an older store's), the rest packed. */
async function fill(dir: string): Promise<{ store: LocalStore; data: Buffer[]; digests: string[] }> {
  const data = Array.from({ length: 30 }, (_, i) => (i === 17 ? prng(7, 70_000) : prng(300 + i, 1000 + 611 * i)));
  const old = await LocalStore.open(dir, { workers: 0, loose: true });
  const digests: string[] = [];
  for (const d of data.slice(0, 6)) digests.push((await old.put(d)).digest);
  await old.close();
  const store = await LocalStore.open(dir, { workers: 2 });
  for (const d of data.slice(6)) digests.push((await store.put(d)).digest);
  return { store, data, digests };
}

describe('LocalStore.readInOrder', () => {
  it('hands every object over in order, across batches (one object larger than a batch), repeats included', async () => {
    const t = tmpDir();
    const { store, data, digests } = await fill(t.dir);
    try {
      const order = [...digests.keys(), 3, 17, 3];
      const seen: number[] = [];
      await store.readInOrder(order.map((k) => ({ digest: digests[k]!, length: data[k]!.length })), async (i, bytes) => {
        seen.push(i);
        assert.ok(Buffer.from(bytes).equals(data[order[i]!]!), `object ${i}`);
        await new Promise((r) => setImmediate(r)); // the caller may take its time: the buffer is not reused meanwhile
      }, { batchBytes: 16_000 });
      assert.deepEqual(seen, order.map((_, i) => i));
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('stops at a corrupt object (E_CORRUPT_OBJECT naming it) before handing it over, and refuses a wrong length', async () => {
    const t = tmpDir();
    const { store, data, digests } = await fill(t.dir);
    try {
      const bad = digests[20]!;
      flipObjectByte(store, bad);
      const seen: number[] = [];
      const items = digests.map((d, k) => ({ digest: d, length: data[k]!.length }));
      await assert.rejects(
        store.readInOrder(items, (i) => void seen.push(i), { batchBytes: 16_000 }),
        (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT' && e.data.digest === bad,
      );
      assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i));
      const short = [{ digest: digests[8]!, length: data[8]!.length - 1 }];
      await assert.rejects(store.readInOrder(short, () => assert.fail('handed over')), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT');
      const missing = [{ digest: 'ab'.repeat(32), length: 10 }];
      await assert.rejects(store.readInOrder(missing, () => assert.fail('handed over')), (e: VmdnError) => e.code === 'E_NOT_FOUND');
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});
