import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { writeAll } from '../../src/nbd/socket-io.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';

describe('writeAll', () => {
  it('replies waiting on a full socket share one drain wait, and all arrive in order', async () => {
    const t = tmpDir();
    const server = net.createServer();
    server.listen(`${t.dir}/s`);
    await once(server, 'listening');
    const client = net.connect(`${t.dir}/s`);
    const [sock] = (await once(server, 'connection')) as [net.Socket];
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
      client.destroy();
      sock.destroy();
      server.close();
      t.cleanup();
    }
  });
});
