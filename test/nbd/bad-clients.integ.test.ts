/**
 * `vmdn nbd` against clients that break the protocol: each gets an error reply
 * or a closed connection, the server keeps serving the next client, and its
 * memory stays bounded. Ends with a seeded mutator over a valid client stream.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { damageEveryObject } from '../helpers/object-bytes.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { CMD, CMD_FLAG_DF, CMD_FLAG_REQ_ONE, EINVAL, goData, metaData, OPT, option, RawConn, REP_ACK, REP_ERR_UNSUP, request, startNbd, importRandomExt4 } from './raw-client.js';

const MiB = 2 ** 20;
/**
 * Peak RSS allowed. Idle the server is ~80 MiB; these tests push ~2 GiB of reads
 * through it and it peaks near 300 MiB (garbage not yet collected, malloc arenas).
 * Without the shared byte budget the hogs alone would hold over 1.5 GiB.
 */
const MAX_RSS = 450 * MiB;

describe('vmdn nbd and bad clients', () => {
  const t = tmpDir('vmdn-nbd-bad-');
  const store = path.join(t.dir, 'store');
  const disk = path.join(t.dir, 'disk.raw');
  const sock = path.join(t.dir, 'nbd.sock');
  let server: Awaited<ReturnType<typeof startNbd>>;
  let image: Buffer;

  /** A well-behaved client still gets the right bytes: the server survived what came before. */
  async function stillServes(checkBytes = true): Promise<void> {
    assert.ok(server.alive(), 'server process is alive');
    const c = await RawConn.connect(sock);
    const { size } = await c.go('img:1');
    assert.equal(size, BigInt(image.length));
    const off = image.length - 3 * MiB - 777;
    c.send(request(CMD.READ, off, 3 * MiB, { handle: 42 }));
    const r = (await c.reply(3 * MiB))!;
    assert.equal(r.error, 0);
    assert.equal(r.handle, 42n);
    assert.equal(r.data.length, 3 * MiB);
    if (checkBytes) assert.ok(r.data.equals(image.subarray(off, off + 3 * MiB)));
    c.send(request(CMD.DISC, 0, 0));
    assert.ok(await c.closedWithin(5000), 'DISC closes the connection');
  }

  before(async () => {
    image = importRandomExt4(t.dir, store, disk, 3, 16);
    server = await startNbd(store, ['img:1', '--socket', sock]);
  });
  after(async () => {
    await server?.stop();
    t.cleanup();
  });

  it('unknown client flags, a wrong option or request magic: connection closed', async () => {
    let c = await RawConn.connect(sock);
    await c.read(18);
    c.send(Buffer.from([0x80, 0, 0, 0])); // a client flag nobody defined
    assert.ok(await c.closedWithin(5000));

    c = await RawConn.connect(sock);
    await c.greet();
    c.send(Buffer.concat([Buffer.from('IHAVEOPX'), Buffer.alloc(8)]));
    assert.ok(await c.closedWithin(5000));

    c = await RawConn.connect(sock);
    await c.go('');
    const bad = request(CMD.READ, 0, 512);
    bad.writeUInt32BE(0xdeadbeef, 0);
    c.send(bad);
    assert.equal(await c.reply(), null, 'no reply, the connection is closed');
    await stillServes();
  });

  it('unknown options get NBD_REP_ERR_UNSUP and the handshake goes on; LIST names the export', async () => {
    const c = await RawConn.connect(sock);
    await c.greet();
    c.send(option(99, Buffer.from('whatever')));
    assert.deepEqual(((await c.optReply())!).type, REP_ERR_UNSUP);
    c.send(option(11)); // extended headers: not offered
    assert.equal((await c.optReply())!.type, REP_ERR_UNSUP);
    c.send(option(OPT.STRUCTURED_REPLY, Buffer.from('x')));
    assert.equal((await c.optReply())!.type, 2 ** 31 + 3, 'STRUCTURED_REPLY with data is invalid');
    c.send(option(OPT.LIST));
    const s = (await c.optReply())!;
    assert.equal(s.type, 2);
    assert.equal(s.data.subarray(4).toString(), 'img:1');
    assert.equal((await c.optReply())!.type, REP_ACK);
    c.send(option(OPT.LIST, Buffer.from('x')));
    assert.equal((await c.optReply())!.type, 2 ** 31 + 3, 'LIST with data is invalid');
    c.send(option(OPT.GO, goData('img:1').subarray(0, 7)));
    assert.equal((await c.optReply())!.type, 2 ** 31 + 3, 'GO cut short is invalid');
    c.send(option(OPT.GO, goData('no-such')));
    assert.equal((await c.optReply())!.type, 2 ** 31 + 6, 'unknown export');
    c.send(option(OPT.ABORT));
    assert.equal((await c.optReply())!.type, REP_ACK);
    assert.ok(await c.closedWithin(5000));
  });

  it('an option length of 4 GiB is refused without reading it, and the connection closed', async () => {
    const c = await RawConn.connect(sock);
    await c.greet();
    c.send(option(OPT.GO, Buffer.alloc(0), 0xfffffff0));
    assert.equal((await c.optReply())!.type, 2 ** 31 + 9, 'NBD_REP_ERR_TOO_BIG');
    assert.ok(await c.closedWithin(5000));
    await stillServes();
  });

  it('reads past the end, absurd lengths, bad flags and unknown commands get EINVAL; the connection lives on', async () => {
    const c = await RawConn.connect(sock);
    await c.go('');
    const size = image.length;
    const cases: Array<[string, Buffer]> = [
      ['read past the end', request(CMD.READ, size - 100, 4096)],
      ['read at 2^64-1', request(CMD.READ, 2n ** 64n - 1n, 1)],
      ['read of 4 GiB', request(CMD.READ, 0, 0xffffffff)],
      ['read of 33 MiB', request(CMD.READ, 0, 33 * MiB)],
      ['unknown command', request(77, 0, 0)],
      ['unknown command flag', request(CMD.READ, 0, 512, { flags: 0x8000 })],
      ['trim past the end', request(CMD.TRIM, size, 4096)],
    ];
    for (const [what, req] of cases) {
      c.send(req);
      const r = await c.reply();
      assert.ok(r, `${what}: a reply, not a hang-up`);
      assert.equal(r.error, EINVAL, what);
      assert.equal(r.data.length, 0, `${what}: no data after an error`);
    }
    c.send(request(CMD.WRITE, size - 10, 4096, { data: Buffer.alloc(4096) }));
    assert.equal((await c.reply())!.error, 28, 'write past the end: ENOSPC (payload skipped, stream still in step)');
    c.send(request(CMD.READ, 4096, 4096, { handle: 7 }));
    const ok = (await c.reply(4096))!;
    assert.deepEqual([ok.error, ok.handle], [0, 7n]);
    assert.ok(ok.data.equals(image.subarray(4096, 8192)));
    // a write whose payload we will not read: answered, then the connection is closed
    c.send(request(CMD.WRITE, 0, 0xfffffff0));
    assert.equal((await c.reply())!.error, EINVAL);
    assert.ok(await c.closedWithin(5000));
    await stillServes();
  });

  it('clients that vanish mid-reply or pile up huge reads cost nothing lasting; memory stays bounded', async () => {
    for (let i = 0; i < 20; i++) {
      const c = await RawConn.connect(sock);
      await c.go('');
      for (let k = 0; k < 4; k++) c.send(request(CMD.READ, 0, 16 * MiB, { handle: k }));
      await c.read(16 + 1000 + i * 4000);
      c.destroy();
    }
    // many clients asking 16 MiB reads (most of the disk) and never reading the replies
    const hogs = await Promise.all(Array.from({ length: 12 }, () => RawConn.connect(sock)));
    for (const c of hogs) {
      await c.go('');
      for (let k = 0; k < 16; k++) c.send(request(CMD.READ, k * 4096, 16 * MiB, { handle: k }));
    }
    await new Promise((r) => setTimeout(r, 3000));
    const peak = server.peakRss();
    for (const c of hogs) c.destroy();
    assert.ok(peak < MAX_RSS, `peak RSS ${Math.round(peak / MiB)} MiB`);
    await stillServes();
  });

  it('a seeded mutator over a valid client stream never brings the server down', async () => {
    const seed = seedFrom('VMDN_NBD_FUZZ_SEED');
    const rnd = mulberry32(seed);
    const valid = Buffer.concat([
      Buffer.from([0, 0, 0, 3]),
      option(OPT.INFO, goData('img:1', [3, 1])),
      option(OPT.LIST),
      option(OPT.STRUCTURED_REPLY),
      option(OPT.LIST_META_CONTEXT, metaData('img:1', ['base:'])),
      option(OPT.SET_META_CONTEXT, metaData('', ['base:allocation', 'qemu:dirty-bitmap:x'])),
      option(OPT.GO, goData('', [3])),
      // DF: one data chunk, whatever holes the range has
      request(CMD.READ, 8192, 65536, { handle: 1, flags: CMD_FLAG_DF }),
      request(CMD.BLOCK_STATUS, 0, 16 * MiB, { handle: 8 }),
      request(CMD.BLOCK_STATUS, 4096, 8192, { handle: 9, flags: CMD_FLAG_REQ_ONE }),
      request(CMD.WRITE, 1000, 5000, { handle: 2, data: Buffer.alloc(5000, 0xee) }),
      request(CMD.FLUSH, 0, 0, { handle: 3 }),
      request(CMD.TRIM, 0, 8192, { handle: 4 }),
      request(CMD.WRITE_ZEROES, 40960, 8192, { handle: 5, flags: 1 }),
      request(CMD.READ, 0, 16384, { handle: 6 }),
      request(CMD.DISC, 0, 0, { handle: 7 }),
    ]);
    const mutate = (b: Buffer): Buffer => {
      const m = Buffer.from(b);
      const n = 1 + Math.floor(rnd() * 4);
      let out = m;
      for (let i = 0; i < n; i++) {
        const at = Math.floor(rnd() * out.length);
        const k = rnd();
        if (k < 0.4) out[at] = Math.floor(rnd() * 256);
        else if (k < 0.6) {
          // a mutant cut shorter than a word earlier in this loop has no word to overwrite
          if (out.length >= 4) out.writeUInt32BE([0, 1, 0xffffffff, 0x7fffffff, 32 * MiB + 1][Math.floor(rnd() * 5)]!, Math.min(at, out.length - 4));
        } else if (k < 0.8) out = out.subarray(0, at);
        else out = Buffer.concat([out.subarray(0, at), out.subarray(at + Math.floor(rnd() * 64))]);
      }
      return out;
    };
    const one = async (bytes: Buffer) => {
      const c = await RawConn.connect(sock);
      c.send(bytes);
      c.sock.end();
      if (!(await c.closedWithin(10_000))) c.destroy();
      return c.received;
    };
    const got: number[] = [];
    for (let i = 0; i < 300; i += 10) got.push(...(await Promise.all(Array.from({ length: 10 }, () => one(mutate(valid))))));
    // the mutants must reach every phase, or this tests only the greeting
    const replied = got.filter((n) => n > 18).length;
    const readData = got.filter((n) => n > 65536).length;
    assert.ok(replied > 100 && readData > 20, `seed ${seed}: ${replied} mutants got option replies, ${readData} read data`);
    assert.ok(server.alive(), `seed ${seed}: server alive`);
    assert.ok(server.peakRss() < MAX_RSS, `seed ${seed}: peak RSS ${Math.round(server.peakRss() / MiB)} MiB`);
    // mutated offsets may have written anywhere (into the overlay): check the reply, not the bytes
    await stillServes(false);
  });

  it('a corrupt object in the store fails the reads that need it with EIO, not the server', async () => {
    // damage every stored object but the manifest: whatever chunk a read needs next fails its hash check
    assert.ok((await damageEveryObject(store, 1, ['img:1'])) > 0);
    // a fresh server on the damaged store: the running one may hold every chunk of this
    // small image in its decoded-chunk cache after the tests above, and then never reads the store
    const sock2 = path.join(t.dir, 'nbd2.sock');
    const fresh = await startNbd(store, ['img:1', '--socket', sock2, '--readonly']);
    try {
      const c = await RawConn.connect(sock2);
      await c.go('');
      const errors = new Set<number>();
      for (let off = 0; off + 4 * MiB <= image.length; off += 4 * MiB) {
        c.send(request(CMD.READ, off, 4 * MiB));
        const r = (await c.reply(4 * MiB))!;
        errors.add(r.error);
      }
      assert.ok(errors.has(5), `some read failed with EIO (got ${[...errors]})`);
      c.destroy();
      assert.ok(fresh.alive(), 'the server that met the damage is alive');
    } finally {
      await fresh.stop();
    }
    assert.ok(server.alive());
  });
});
