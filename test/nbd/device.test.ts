/**
 * BlockDevice and Overlay without a network: seeded random writes (unaligned,
 * across block edges, at the unaligned end of the disk) read back over the
 * base, the overlay keeps flushed writes across a reopen and refuses another
 * image, and a read-only device rejects writes as a failed promise.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { MemDisk } from '../helpers/memdisk.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { BlockDevice } from '../../src/nbd/device.js';
import { Overlay } from '../../src/nbd/overlay.js';
import { AllocationMap } from '../../src/nbd/allocation.js';
import type { Manifest } from '../../src/model/manifest.js';

const SIZE = 1_000_000 + 123; // not a multiple of the 4 KiB overlay block
const M1 = 'a'.repeat(64);
const M2 = 'b'.repeat(64);

describe('nbd BlockDevice over an Overlay', () => {
  const t = tmpDir('vmdn-nbd-dev-');
  after(t.cleanup);
  const baseBytes = Buffer.from(Array.from({ length: SIZE }, (_, i) => (i * 7 + (i >> 9)) & 255));

  it('random writes read back merged over the base, and survive a flush and reopen', async () => {
    const seed = seedFrom('VMDN_NBD_DEV_SEED');
    const rnd = mulberry32(seed);
    const file = path.join(t.dir, 'a.ovl');
    const model = Buffer.from(baseBytes);
    let dev = new BlockDevice(new MemDisk(baseBytes), await Overlay.open(file, SIZE, M1));
    const writes: Array<Promise<void>> = [];
    for (let i = 0; i < 200; i++) {
      const len = 1 + Math.floor(rnd() * 20_000);
      const off = rnd() < 0.1 ? SIZE - len : Math.floor(rnd() * (SIZE - len));
      const data = Buffer.alloc(len, 1 + Math.floor(rnd() * 255));
      data[0] = 0;
      model.set(data, off);
      writes.push(dev.write(off, data)); // not awaited one by one: concurrent writes must not lose bytes
    }
    await Promise.all(writes);
    assert.ok(Buffer.from(await dev.read(0, SIZE)).equals(model), `seed ${seed}`);
    for (let i = 0; i < 50; i++) {
      const len = Math.floor(rnd() * 50_000);
      const off = Math.floor(rnd() * (SIZE - len));
      assert.ok(Buffer.from(await dev.read(off, len)).equals(model.subarray(off, off + len)), `seed ${seed}: read ${off}+${len}`);
    }
    await dev.flush();
    await dev.overlay!.close();
    dev = new BlockDevice(new MemDisk(baseBytes), await Overlay.open(file, SIZE, M1));
    assert.ok(Buffer.from(await dev.read(0, SIZE)).equals(model), `seed ${seed}: after reopen`);
    await dev.overlay!.close();
    assert.ok(Buffer.from(baseBytes).equals(Buffer.from(await new MemDisk(baseBytes).read(0, SIZE))), 'the base is untouched');
  });

  it('an overlay made for one image is refused for another, and a non-overlay file is refused', async () => {
    const file = path.join(t.dir, 'b.ovl');
    await (await Overlay.open(file, SIZE, M1)).close();
    await assert.rejects(Overlay.open(file, SIZE, M2), /not an overlay for this image/);
    await assert.rejects(Overlay.open(file, SIZE + 1, M1), /not an overlay for this image/);
    const junk = path.join(t.dir, 'junk');
    fs.writeFileSync(junk, 'hello');
    await assert.rejects(Overlay.open(junk, SIZE, M1), /not an overlay/);
  });

  it('a read-only device rejects writes with a failed promise (EPERM), never a synchronous throw', async () => {
    const dev = new BlockDevice(new MemDisk(baseBytes), null);
    let p: Promise<void> | undefined;
    assert.doesNotThrow(() => (p = dev.write(0, Buffer.alloc(10))));
    await assert.rejects(p!, (e: any) => e.data?.errno === 'EPERM');
    await assert.rejects(dev.read(SIZE - 1, 2), /outside the disk/);
  });

  it('map(): data where the manifest has chunks or the overlay has blocks, holes elsewhere, bounded runs', async () => {
    const seed = seedFrom('VMDN_NBD_DEV_SEED');
    const rnd = mulberry32(seed);
    const isData = new Uint8Array(SIZE);
    const chunks: Array<[number, number, string]> = [];
    for (let at = Math.floor(rnd() * 5000); at < SIZE; ) {
      const len = Math.min(SIZE - at, 1 + Math.floor(rnd() * 30_000));
      chunks.push([at, len, M1]);
      isData.fill(1, at, at + len);
      at += len + (rnd() < 0.3 ? 0 : Math.floor(rnd() * 40_000));
    }
    const alloc = AllocationMap.ofManifest({ chunks, virtualSize: SIZE } as unknown as Manifest);
    const dev = new BlockDevice(new MemDisk(baseBytes), await Overlay.open(path.join(t.dir, 'm.ovl'), SIZE, M1), alloc);
    for (let i = 0; i < 20; i++) {
      const off = Math.floor(rnd() * SIZE);
      const len = 1 + Math.floor(rnd() * 6000);
      await dev.write(off, Buffer.alloc(Math.min(len, SIZE - off)));
      isData.fill(1, Math.floor(off / 4096) * 4096, Math.min(SIZE, Math.ceil((off + len) / 4096) * 4096));
    }
    for (let i = 0; i < 300; i++) {
      const off = Math.floor(rnd() * SIZE);
      const len = Math.floor(rnd() * (SIZE - off));
      const max = 1 + Math.floor(rnd() * 20);
      const runs = dev.map(off, len, max);
      assert.ok(runs.length <= max, `seed ${seed}`);
      let at = off;
      runs.forEach((r, k) => {
        assert.equal(r.offset, at, `seed ${seed}: runs are contiguous`);
        assert.ok(r.length > 0);
        if (k > 0) assert.notEqual(r.data, runs[k - 1]!.data, `seed ${seed}: neighbours differ`);
        assert.ok(isData.subarray(r.offset, r.offset + r.length).every((b) => b === (r.data ? 1 : 0)), `seed ${seed}: run ${r.offset}+${r.length} ${r.data}`);
        at += r.length;
      });
      assert.ok(at <= off + len && (runs.length === max || at === off + len), `seed ${seed}: covers the range or ${max} runs`);
    }
    await dev.overlay!.close();
  });
});
