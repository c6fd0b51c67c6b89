/**
 * structuredRead over a real Unix socket: a read across data and holes goes
 * out as one write (a write per chunk cost a syscall and a client wake-up
 * each; qemu-img convert of the corpus sends thousands of such reads), its
 * chunks in order with DONE on the last only; a run that fails to read still
 * sends the chunks before it, then rethrows.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { unixPair } from './unix-pair.js';
import { MemDisk } from '../helpers/memdisk.js';
import { BlockDevice } from '../../src/nbd/device.js';
import { AllocationMap } from '../../src/nbd/allocation.js';
import { structuredRead } from '../../src/nbd/replies.js';
import { REPLY_FLAG_DONE, REPLY_TYPE, StructuredReply } from '../../src/nbd/protocol.js';
import type { Manifest } from '../../src/model/manifest.js';

const SIZE = 1 << 20;
// data [0,64K) hole [64K,128K) data [128K,256K) hole [256K,1M)
const CHUNKS = [[0, 65536, 'a'.repeat(64)], [131072, 131072, 'b'.repeat(64)]];
const bytes = Buffer.from(Array.from({ length: SIZE }, (_, i) => (i * 13 + (i >> 8)) & 255));

/** A disk whose reads at or past `failAt` fail (a store that lost an object). */
class FailingDisk extends MemDisk {
  constructor(data: Uint8Array, private readonly failAt: number) {
    super(data);
  }
  override async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset + length > this.failAt) throw new Error('object missing');
    return super.read(offset, length);
  }
}

async function pair(): Promise<{ sock: net.Socket; client: net.Socket; writes: () => number; close: () => void }> {
  const { sock, client, close } = await unixPair();
  // every hand-off of queued bytes to the handle (one writev or write syscall each)
  let n = 0;
  const s = sock as unknown as { _writev: (...a: unknown[]) => void; _write: (...a: unknown[]) => void };
  const wv = s._writev.bind(sock);
  const w = s._write.bind(sock);
  s._writev = (...a) => (n++, wv(...a));
  s._write = (...a) => (n++, w(...a));
  return { sock, client, writes: () => n, close };
}

/** The structured chunks in `buf`: type, flags, payload. */
function chunks(buf: Buffer): Array<{ type: number; flags: number; payload: Buffer }> {
  const out = [];
  for (let at = 0; at < buf.length; ) {
    const h = StructuredReply.parse(buf.subarray(at, at + StructuredReply.size));
    out.push({ type: h.type, flags: h.flags, payload: buf.subarray(at + 20, at + 20 + h.length) });
    at += 20 + h.length;
  }
  return out;
}

async function received(client: net.Socket, n: number): Promise<Buffer> {
  const got: Buffer[] = [];
  let have = 0;
  for await (const b of client) {
    got.push(b as Buffer);
    if ((have += (b as Buffer).length) >= n) break;
  }
  return Buffer.concat(got);
}

describe('nbd structuredRead', () => {
  const alloc = AllocationMap.ofManifest({ chunks: CHUNKS, virtualSize: SIZE } as unknown as Manifest);
  const handle = Buffer.from('hhhhhhhh');

  it('a read across data and holes is one write, chunks in order, DONE on the last', async () => {
    const p = await pair();
    try {
      const dev = new BlockDevice(new MemDisk(bytes), null, alloc);
      const sent = await structuredRead(p.sock, handle, dev, 1000, 300_000, false);
      assert.equal(sent, 65536 - 1000 + 131072);
      assert.equal(p.writes(), 1, 'one write for the whole reply');
      // data (8+64536), hole (12), data (8+131072), hole (12): four headers of 20
      const buf = await received(p.client, 4 * 20 + 8 + 64536 + 12 + 8 + 131072 + 12);
      const cs = chunks(buf);
      assert.deepEqual(cs.map((c) => c.type), [REPLY_TYPE.OFFSET_DATA, REPLY_TYPE.OFFSET_HOLE, REPLY_TYPE.OFFSET_DATA, REPLY_TYPE.OFFSET_HOLE]);
      assert.deepEqual(cs.map((c) => c.flags & REPLY_FLAG_DONE), [0, 0, 0, REPLY_FLAG_DONE]);
      assert.equal(cs[0]!.payload.readBigUInt64BE(0), 1000n);
      assert.ok(cs[0]!.payload.subarray(8).equals(bytes.subarray(1000, 65536)));
      assert.equal(cs[2]!.payload.readBigUInt64BE(0), 131072n);
      assert.ok(cs[2]!.payload.subarray(8).equals(bytes.subarray(131072, 262144)));
    } finally {
      p.close();
    }
  });

  it('a run that fails to read: the chunks before it are sent, then the error is thrown', async () => {
    const p = await pair();
    try {
      const dev = new BlockDevice(new FailingDisk(bytes, 131072 + 10), null, alloc);
      await assert.rejects(structuredRead(p.sock, handle, dev, 0, 300_000, false), /object missing/);
      const buf = await received(p.client, 2 * 20 + 8 + 65536 + 12);
      const cs = chunks(buf);
      assert.deepEqual(cs.map((c) => c.type), [REPLY_TYPE.OFFSET_DATA, REPLY_TYPE.OFFSET_HOLE]);
      assert.deepEqual(cs.map((c) => c.flags & REPLY_FLAG_DONE), [0, 0], 'the caller ends the reply with an ERROR chunk');
    } finally {
      p.close();
    }
  });
});
