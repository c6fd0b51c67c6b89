import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeAll } from '../../src/nbd/socket-io.js';
import { unixPair } from './unix-pair.js';
import { prng } from '../helpers/images.js';

describe('writeAll', () => {
  it('replies waiting on a full socket share one drain wait, and all arrive in order', async () => {
    const { sock, client, close } = await unixPair();
    try {
      client.pause(); // a client that does not read yet: the kernel buffers fill
      const parts = Array.from({ length: 40 }, (_, i) => prng(60 + i, 256 << 10));
      const base = { drain: sock.listenerCount('drain'), close: sock.listenerCount('close') };
      const waits = parts.map((p) => writeAll(sock, [p.subarray(0, 100), p.subarray(100)]));
      assert.ok(sock.writableNeedDrain, 'the socket buffer is full');
      // one listener pair however many replies wait (40 pairs set off Node's MaxListeners warning)
      assert.ok(sock.listenerCount('drain') <= base.drain + 1, `drain listeners: ${sock.listenerCount('drain')}`);
      assert.ok(sock.listenerCount('close') <= base.close + 1, `close listeners: ${sock.listenerCount('close')}`);
      const got: Buffer[] = [];
      let n = 0;
      const total = parts.reduce((s, p) => s + p.length, 0);
      const all = new Promise<void>((resolve) =>
        client.on('data', (b: Buffer) => {
          got.push(b);
          if ((n += b.length) === total) resolve();
        }),
      );
      client.resume();
      await Promise.all(waits);
      await all;
      assert.ok(Buffer.concat(got).equals(Buffer.concat(parts)));
      assert.equal(sock.listenerCount('drain'), base.drain);
    } finally {
      close();
    }
  });

  it('says its parts are written only once the kernel took them all, or the socket is gone', async () => {
    const { sock, client, close } = await unixPair();
    try {
      client.pause();
      const big = prng(7, 4 << 20); // more than the socket buffers hold
      let written = 0;
      void writeAll(sock, [Buffer.from('head'), big], () => written++);
      let lost = 0;
      void writeAll(sock, [prng(8, 1 << 20)], () => lost++);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(written, 0, 'called while the bytes still wait in user space');
      let n = 0;
      const first = new Promise<void>((resolve) =>
        client.on('data', (b: Buffer) => {
          if ((n += b.length) >= big.length + 4) resolve();
        }),
      );
      client.resume();
      await first;
      client.pause();
      await new Promise((r) => setImmediate(r));
      assert.equal(written, 1);
      sock.destroy(); // a reply still queued is let go too (its slots must not leak)
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(lost, 1);
      let empty = 0;
      void writeAll(sock, [Buffer.from('x')], () => empty++);
      assert.equal(empty, 1, 'a gone socket lets go at once');
    } finally {
      close();
    }
  });
});
