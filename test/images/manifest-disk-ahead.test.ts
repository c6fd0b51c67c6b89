import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LocalStore } from '../../src/store/local/local-store.js';
import { ManifestDisk } from '../../src/images/manifest-disk.js';
import type { Manifest } from '../../src/model/manifest.js';
import type { Digest } from '../../src/store/digest.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';

describe('ManifestDisk read-ahead', () => {
  it('fetches the chunks after a sequential read before they are asked for, each once, bytes intact', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 1 });
    try {
      const size = 64 << 10;
      const data = Array.from({ length: 40 }, (_, i) => prng(700 + i, size));
      const digests = await Promise.all(data.map(async (d) => (await store.put(d)).digest));
      // a hole of one chunk's size after the 20th: read-ahead goes past holes a client skips
      const offsetOf = (i: number) => i * size + (i >= 20 ? size : 0);
      const m = {
        kind: 'vmdn.manifest', version: 1, virtualSize: 41 * size, source: { format: 'raw', clusterSize: 65536 }, chunker: 'fixed:64k', allocated: 40 * size,
        chunks: digests.map((d, i) => [offsetOf(i), size, d]),
      } as unknown as Manifest;
      // count what the disk asks the (real) store for
      const asked: Digest[] = [];
      const counting = Object.assign(Object.create(store) as LocalStore, {
        get: (d: Digest) => (asked.push(d), store.get(d)),
        getMany: (ds: Digest[]) => (asked.push(...ds), store.getMany(ds)),
      });
      const disk = new ManifestDisk(m, counting, 8, 512 << 10);
      for (let i = 0; i < 40; i++) {
        const pieces = await disk.readPieces(offsetOf(i), size);
        assert.ok(Buffer.concat(pieces).equals(data[i]!), `chunk ${i}`);
        if (i === 0) assert.ok(asked.length >= 8, `asked ahead after the first read: ${asked.length}`);
      }
      assert.equal(new Set(asked).size, 40);
      assert.equal(asked.length, 40, 'each chunk fetched once');
      // a jump elsewhere stops it: only what that read needs
      const before = asked.length;
      assert.ok(Buffer.from(await disk.read(offsetOf(3), size)).equals(data[3]!));
      assert.equal(asked.length, before + 1);
      await disk.close();
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});
