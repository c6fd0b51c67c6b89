/**
 * Structured replies and base:allocation block status: qemu-img sees the
 * image's holes (and skips them), an overlay write makes a hole data, and raw
 * clients that negotiate oddly get errors, not a dead server.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { tmpDir } from '../helpers/tmp.js';
import {
  CMD, CMD_FLAG_DF, CMD_FLAG_REQ_ONE, EINVAL, goData, hasQemuTools, metaData, OPT, option, RawConn, REP_ACK, REP_ERR_INVALID,
  REP_META_CONTEXT, request, RT, startNbd, importRandomExt4, TFLAG_SEND_DF,
} from './raw-client.js';

const MiB = 2 ** 20;
const skip = hasQemuTools() ? false : 'qemu-img/qemu-io not installed';

interface MapEntry { start: number; length: number; data: boolean; zero: boolean }

function qemuMap(uri: string): MapEntry[] {
  const r = spawnSync('qemu-img', ['map', '--output=json', '-f', 'raw', uri], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as MapEntry[];
}

/** Greet, then NBD_OPT_STRUCTURED_REPLY and SET_META_CONTEXT with `queries` (none: skip it), then GO. */
async function goStructured(c: RawConn, queries: string[] | null): Promise<{ flags: number; contexts: number }> {
  await c.greet();
  c.send(option(OPT.STRUCTURED_REPLY));
  assert.equal((await c.optReply())!.type, REP_ACK);
  let contexts = 0;
  if (queries) {
    c.send(option(OPT.SET_META_CONTEXT, metaData('', queries)));
    const rs = await c.optReplies();
    assert.equal(rs.at(-1)!.type, REP_ACK);
    contexts = rs.filter((r) => r.type === REP_META_CONTEXT).length;
  }
  c.send(option(OPT.GO, goData('')));
  const rs = await c.optReplies();
  assert.equal(rs.at(-1)!.type, REP_ACK);
  const exp = rs.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 0)!;
  return { flags: exp.data.readUInt16BE(10), contexts };
}

describe('vmdn nbd: structured replies and block status', { skip }, () => {
  const t = tmpDir('vmdn-nbd-sr-');
  const store = path.join(t.dir, 'store');
  const disk = path.join(t.dir, 'disk.raw');
  const sock = path.join(t.dir, 'nbd.sock');
  let server: Awaited<ReturnType<typeof startNbd>>;
  let image: Buffer;
  const uri = () => `nbd+unix:///?socket=${sock}`;

  before(async () => {
    image = importRandomExt4(t.dir, store, disk, 7, 32);
    server = await startNbd(store, ['img:1', '--socket', sock]);
  });
  after(async () => {
    await server?.stop();
    t.cleanup();
  });

  it('qemu-img map shows the holes, only where the image reads zeros; convert and compare still match', () => {
    const m = qemuMap(uri());
    const holes = m.filter((e) => !e.data);
    assert.ok(holes.every((e) => e.zero), 'holes are reported as zero');
    const holeBytes = holes.reduce((n, e) => n + e.length, 0);
    // the 32 MiB filesystem holds ~2 MiB of data: most of it is holes, and none of them has a non-zero byte
    assert.ok(holeBytes > image.length / 2, `hole bytes ${holeBytes} of ${image.length}`);
    for (const h of holes) assert.ok(image.subarray(h.start, h.start + h.length).every((b) => b === 0), `hole at ${h.start}+${h.length} reads zeros in the image`);
    // and every 64 KiB the raw file's own map calls data with non-zero bytes is data here
    for (let at = 0; at < image.length; at += 65536) {
      if (image.subarray(at, at + 65536).some((b) => b !== 0)) assert.ok(m.some((e) => e.data && e.start < at + 65536 && e.start + e.length > at), `data near ${at}`);
    }
    const out = path.join(t.dir, 'out.raw');
    const c = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(), out], { encoding: 'utf8' });
    assert.equal(c.status, 0, c.stderr);
    assert.ok(fs.readFileSync(out).equals(image), 'converted image is identical');
    const cmp = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri(), disk], { encoding: 'utf8' });
    assert.equal(cmp.status, 0, cmp.stdout + cmp.stderr);
  });

  it('raw reads: holes as OFFSET_HOLE chunks, DF gives one data chunk, a read past the end an ERROR chunk', async () => {
    const c = await RawConn.connect(sock);
    const { flags } = await goStructured(c, null);
    assert.ok(flags & TFLAG_SEND_DF, 'DF offered with structured replies');
    const hole = qemuMap(uri()).find((e) => !e.data && e.length >= 2 * MiB)!;
    c.send(request(CMD.READ, hole.start, MiB, { handle: 5 }));
    const cs = await c.chunks();
    assert.deepEqual(cs.map((x) => [x.type, x.handle]), [[RT.OFFSET_HOLE, 5n]]);
    assert.equal(cs[0]!.data.readBigUInt64BE(0), BigInt(hole.start));
    assert.equal(cs[0]!.data.readUInt32BE(8), MiB);
    c.send(request(CMD.READ, hole.start, MiB, { handle: 6, flags: CMD_FLAG_DF }));
    const df = await c.chunks();
    assert.deepEqual(df.map((x) => [x.type, x.data.length]), [[RT.OFFSET_DATA, 8 + MiB]]);
    // a range across data and holes reassembles to the image's bytes
    c.send(request(CMD.READ, 0, 4 * MiB, { handle: 7 }));
    const got = Buffer.alloc(4 * MiB, 0xff);
    for (const x of await c.chunks()) {
      const off = Number(x.data.readBigUInt64BE(0));
      if (x.type === RT.OFFSET_DATA) x.data.copy(got, off, 8);
      else got.fill(0, off, off + x.data.readUInt32BE(8));
    }
    assert.ok(got.equals(image.subarray(0, 4 * MiB)));
    c.send(request(CMD.READ, image.length - 10, 20, { handle: 8 }));
    const e = await c.chunks();
    assert.deepEqual(e.map((x) => [x.type, x.error]), [[RT.ERROR, EINVAL]]);
    c.send(request(CMD.BLOCK_STATUS, 0, 4096, { handle: 9 }));
    assert.equal((await c.chunk())!.error, EINVAL, 'no context negotiated: BLOCK_STATUS is EINVAL');
    c.destroy();
  });

  it('meta contexts: unknown namespaces select none, absurd counts and lengths are refused, REQ_ONE gives one extent', async () => {
    // SET before structured replies
    const a = await RawConn.connect(sock);
    await a.greet();
    a.send(option(OPT.SET_META_CONTEXT, metaData('', ['base:allocation'])));
    assert.equal((await a.optReply())!.type, REP_ERR_INVALID);
    // LIST needs no structured replies and names base:allocation
    a.send(option(OPT.LIST_META_CONTEXT, metaData('', [])));
    const l = await a.optReplies();
    assert.deepEqual(l.map((r) => [r.type, r.data.subarray(4).toString()]), [[REP_META_CONTEXT, 'base:allocation'], [REP_ACK, '']]);
    for (const bad of [metaData('', ['base:allocation'], 0xffffffff), metaData('', ['x'], 2), Buffer.concat([metaData('', []).subarray(0, 4), Buffer.from([0xff, 0xff, 0xff, 0xff])])]) {
      a.send(option(OPT.LIST_META_CONTEXT, bad));
      assert.ok((await a.optReply())!.type >= 2 ** 31, 'absurd counts or lengths get an error');
    }
    a.destroy();

    const u = await RawConn.connect(sock);
    assert.equal((await goStructured(u, ['qemu:dirty-bitmap:x', 'nosuch:allocation'])).contexts, 0);
    u.send(request(CMD.BLOCK_STATUS, 0, 4096, { handle: 1 }));
    assert.equal((await u.chunk())!.error, EINVAL);
    u.destroy();

    const c = await RawConn.connect(sock);
    assert.equal((await goStructured(c, ['base:allocation'])).contexts, 1);
    c.send(request(CMD.BLOCK_STATUS, 0, image.length, { handle: 2, flags: CMD_FLAG_REQ_ONE }));
    const one = (await c.chunks())[0]!;
    assert.equal(one.type, RT.BLOCK_STATUS);
    assert.equal(one.data.length, 4 + 8, 'REQ_ONE: one extent');
    c.send(request(CMD.BLOCK_STATUS, 0, image.length, { handle: 3 }));
    const all = (await c.chunks())[0]!;
    let sum = 0;
    for (let i = 4; i < all.data.length; i += 8) sum += all.data.readUInt32BE(i);
    assert.equal(sum, image.length, 'extents cover the export');
    for (const [off, len] of [[image.length - 4096, 8192], [0, 0], [2 ** 62, 4096]] as const) {
      c.send(request(CMD.BLOCK_STATUS, off, len, { handle: 4 }));
      assert.equal((await c.chunk())!.error, EINVAL, `BLOCK_STATUS ${off}+${len}`);
    }
    c.send(request(CMD.DISC, 0, 0));
    assert.ok(await c.closedWithin(5000));
    assert.ok(server.alive());
  });

  it('an overlay write inside a hole turns that range into data', () => {
    const hole = qemuMap(uri()).find((e) => !e.data && e.length >= 3 * 65536)!;
    assert.ok(hole, 'the image has a hole of 192 KiB');
    const at = hole.start + 65536;
    const w = spawnSync('qemu-io', ['-f', 'raw', '-c', `write -P 0x5a ${at} 4096`, uri()], { encoding: 'utf8' });
    assert.equal(w.status, 0, w.stderr);
    const m = qemuMap(uri());
    const here = m.find((e) => e.start <= at && e.start + e.length > at)!;
    assert.ok(here.data, `written block is data: ${JSON.stringify(here)}`);
    assert.ok(m.some((e) => !e.data && e.start <= hole.start && e.start + e.length >= at), 'the hole before it stays a hole');
    const r = spawnSync('qemu-io', ['-f', 'raw', '-c', `read -P 0x5a ${at} 4096`, '-c', `read -P 0 ${at + 4096} 4096`, uri()], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, /Pattern verification failed/);
  });
});
