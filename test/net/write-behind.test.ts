/** A pull's output written back while it downloads (write-behind.ts): one fdatasync per `every` bytes, one at a time. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { WriteBehind } from '../../src/net/client/write-behind.js';
import { tmpDir } from '../helpers/tmp.js';

describe('write-behind', () => {
  it('syncs once `every` bytes were placed, never two at once, and lets go of the file', async () => {
    const t = tmpDir();
    const file = `${t.dir}/out.raw`;
    fs.writeFileSync(file, Buffer.alloc(4096, 1));
    const probe = await fsp.open(file, 'r');
    const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    const original = proto.datasync;
    let calls = 0;
    proto.datasync = function (this: unknown) {
      calls++;
      return original.call(this);
    };
    try {
      const wb = new WriteBehind(file, 100);
      wb.placed(60);
      assert.equal(calls, 0, 'below the threshold');
      wb.placed(60);
      wb.placed(200); // one is running (or about to): not a second
      await wb.close();
      assert.equal(calls, 1);
      const again = new WriteBehind(file, 100);
      again.placed(100);
      await again.close();
      assert.equal(calls, 2, 'after the first ended, the next threshold starts another');
      // a file that cannot be opened costs nothing but the writeback (the writer's fsync reports trouble)
      const missing = new WriteBehind(`${t.dir}/absent`, 1);
      missing.placed(10);
      await missing.close();
    } finally {
      proto.datasync = original;
      t.cleanup();
    }
  });
});
