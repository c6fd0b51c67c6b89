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
});
