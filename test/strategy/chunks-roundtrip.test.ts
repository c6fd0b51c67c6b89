import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { RawDisk } from '../../src/container/raw.js';
import { createRawWriter } from '../../src/container/raw-writer.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { importChunks } from '../../src/strategy/chunks/import.js';
import { assembleChunks } from '../../src/strategy/chunks/export.js';
import { decodeManifest, encodeManifest } from '../../src/model/manifest.js';
import { parseChunkerSpec } from '../../src/strategy/chunker.js';
import { sampleDisk, writeRaw, prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;

describe('chunks strategy round trip', () => {
  let t: ReturnType<typeof tmpDir>;
  let store: LocalStore;
  before(async () => {
    t = tmpDir();
    store = await LocalStore.open(path.join(t.dir, 'store'));
  });
  after(async () => {
    await store.close();
    t.cleanup();
  });

  for (const spec of ['cdc', 'cdc:4k:16k:64k', 'fixed:64k', 'fixed:4k']) {
    it(`${spec}: export is byte-identical, zero runs are not stored`, async () => {
      const src = path.join(t.dir, `src-${spec}.raw`);
      sampleDisk(src, 7);
      const disk = await RawDisk.open(src);
      const { manifest, stats } = await importChunks(disk, store, { chunker: parseChunkerSpec(spec) });
      await disk.close();
      assert.equal(manifest.virtualSize, fs.statSync(src).size);
      // the 300 KiB zero run inside data and the holes cost nothing
      assert.ok(stats.dataBytes < 6.5 * MiB, `data ${stats.dataBytes}`);
      // the duplicated 2 MiB region dedups within the image
      assert.ok(stats.distinctChunks < stats.chunks, `${stats.distinctChunks} of ${stats.chunks}`);
      if (spec.startsWith('fixed')) {
        const size = parseChunkerSpec(spec).avg;
        for (const [o, l] of manifest.chunks) {
          assert.ok(l <= size && Math.floor(o / size) === Math.floor((o + l - 1) / size), `fixed chunk [${o},+${l}) crosses an aligned boundary`);
        }
      }
      const m2 = decodeManifest(encodeManifest(manifest));
      assert.deepEqual(m2, manifest);
      const out = path.join(t.dir, `out-${spec}.raw`);
      await assembleChunks(m2, store, await createRawWriter(out, m2.virtualSize));
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(src)), 'exported bytes differ');
    });
  }

  it('dedups across images: a second, mostly equal image adds few objects', async () => {
    const a = path.join(t.dir, 'a.raw');
    const b = path.join(t.dir, 'b.raw');
    const shared = prng(99, 8 * MiB);
    writeRaw(a, 32 * MiB, [{ offset: 1 * MiB, data: shared }]);
    // same content at another, unaligned offset plus a new piece: CDC must still find it
    writeRaw(b, 32 * MiB, [{ offset: 5 * MiB + 4096 * 3, data: shared }, { offset: 20 * MiB, data: prng(100, 1 * MiB) }]);
    const chunker = parseChunkerSpec('cdc');
    const da = await RawDisk.open(a);
    const ra = await importChunks(da, store, { chunker });
    await da.close();
    const db = await RawDisk.open(b);
    const rb = await importChunks(db, store, { chunker });
    await db.close();
    assert.ok(ra.stats.newBytes >= 8 * MiB * 0.99);
    assert.ok(rb.stats.newBytes < 1.6 * MiB, `second image added ${rb.stats.newBytes} bytes`);
  });

  it('an empty disk gives an empty manifest and exports as zeros', async () => {
    const src = path.join(t.dir, 'empty.raw');
    writeRaw(src, 4 * MiB, [{ offset: MiB, data: Buffer.alloc(MiB) }]); // written zeros: allocated but zero
    const disk = await RawDisk.open(src);
    const { manifest } = await importChunks(disk, store, { chunker: parseChunkerSpec('cdc') });
    await disk.close();
    assert.equal(manifest.chunks.length, 0);
    const out = path.join(t.dir, 'empty-out.raw');
    await assembleChunks(manifest, store, await createRawWriter(out, manifest.virtualSize));
    assert.ok(fs.readFileSync(out).equals(Buffer.alloc(4 * MiB)));
  });

  it('honours an aborted signal', async () => {
    const src = path.join(t.dir, 'abort.raw');
    sampleDisk(src, 8);
    const disk = await RawDisk.open(src);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(importChunks(disk, store, { chunker: parseChunkerSpec('cdc'), signal: ac.signal }), (e: Error) => e.name === 'AbortError');
    await disk.close();
  });
});

describe('ManifestDisk', () => {
  it('reads a stored image like the original file, at any offset and length', async () => {
    const { ManifestDisk } = await import('../../src/images/manifest-disk.js');
    const t = tmpDir();
    const store = await LocalStore.open(path.join(t.dir, 'store'));
    try {
      const src = path.join(t.dir, 'src.raw');
      sampleDisk(src, 11);
      const disk = await RawDisk.open(src);
      const { manifest } = await importChunks(disk, store, { chunker: parseChunkerSpec('cdc:4k:16k:64k') });
      await disk.close();
      const md = new ManifestDisk(manifest, store);
      const orig = fs.readFileSync(src);
      let x = 12345;
      for (let i = 0; i < 300; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        const off = x % orig.length;
        const len = Math.min(orig.length - off, (x >>> 7) % (3 * MiB));
        assert.ok(Buffer.from(await md.read(off, len)).equals(orig.subarray(off, off + len)), `read ${off}+${len}`);
      }
      await assert.rejects(md.read(orig.length - 1, 2));
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});
