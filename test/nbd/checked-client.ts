/**
 * An NBD client for stress tests that checks every reply against the image it
 * should read: each data chunk's bytes, each hole chunk's zeros, that a reply
 * covers its whole read, and that reads fail (EIO) exactly where the image's
 * objects are damaged. Requests go by handle, many in flight; what is wrong is
 * tallied, not thrown, so a run reports every bad reply.
 */
import net from 'node:net';
import { SocketReader } from '../../src/nbd/socket-io.js';
import { CMD, CMD_FLAG_DF, goData, OPT, option, request } from './raw-client.js';

const EIO = 5;

/** What the server should answer: the image's bytes, and whether a read touches a damaged object (then EIO). */
export interface Expected {
  image: Buffer;
  isBad(offset: number, length: number): boolean;
}

export interface Tally {
  replies: number;
  bytes: number;
  failed: number;
  wrong: string[];
}

/** A client connection: handshake (structured replies or not), then requests by handle, each reply checked. */
export class Client {
  private readonly r: SocketReader;
  private constructor(readonly sock: net.Socket, readonly structured: boolean, private readonly expect: Expected) {
    this.r = new SocketReader(sock);
  }

  static async open(socketPath: string, structured: boolean, expect: Expected): Promise<Client> {
    const s = await new Promise<net.Socket>((resolve, reject) => {
      const c = net.connect(socketPath);
      c.once('connect', () => resolve(c));
      c.once('error', reject);
    });
    s.on('error', () => undefined);
    const c = new Client(s, structured, expect);
    await c.r.read(18);
    s.write(Buffer.from([0, 0, 0, 3]));
    if (structured) {
      s.write(option(OPT.STRUCTURED_REPLY));
      await c.optReply();
    }
    s.write(option(OPT.GO, goData('')));
    while ((await c.optReply()) !== 1); // info replies, then ACK
    return c;
  }

  private async optReply(): Promise<number> {
    const h = await this.r.read(20);
    await this.r.read(h.readUInt32BE(16));
    const type = h.readUInt32BE(12);
    if (type !== 1 && type !== 3) throw new Error(`option refused: ${type}`);
    return type;
  }

  /** Read `reqs` with up to `window` in flight; every reply's bytes are checked against the image. */
  async run(reqs: Array<{ offset: number; length: number; df?: boolean }>, window: number, tally: Tally, pauseEvery = 0): Promise<void> {
    const pending = new Map<bigint, { offset: number; length: number; covered: number }>();
    let next = 0;
    let handle = 1n;
    let steps = 0;
    const send = () => {
      while (next < reqs.length && pending.size < window) {
        const q = reqs[next++]!;
        const h = handle++;
        pending.set(h, { ...q, covered: 0 });
        this.sock.write(request(CMD.READ, q.offset, q.length, { handle: Number(h), flags: q.df && this.structured ? CMD_FLAG_DF : 0 }));
      }
    };
    send();
    while (pending.size > 0) {
      if (pauseEvery && ++steps % pauseEvery === 0) {
        // replies pile up in the socket while other clients' reads reuse the slab
        this.sock.pause();
        await new Promise((r) => setTimeout(r, 150));
      }
      const done = this.structured ? await this.chunk(pending, tally) : await this.simple(pending, tally);
      if (done !== null) {
        pending.delete(done);
        tally.replies++;
        send();
      }
    }
  }

  private check(q: { offset: number; length: number }, at: number, got: Buffer, tally: Tally): void {
    if (at < q.offset || at + got.length > q.offset + q.length) tally.wrong.push(`chunk ${at}+${got.length} outside read ${q.offset}+${q.length}`);
    else if (!got.equals(this.expect.image.subarray(at, at + got.length))) {
      let i = 0;
      while (got[i] === this.expect.image[at + i]) i++;
      tally.wrong.push(`wrong bytes at ${at + i} in read ${q.offset}+${q.length}`);
    }
    tally.bytes += got.length;
  }

  private async simple(pending: Map<bigint, { offset: number; length: number; covered: number }>, tally: Tally): Promise<bigint> {
    const h = await this.r.read(16);
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error('bad simple reply magic');
    const handle = h.readBigUInt64BE(8);
    const q = pending.get(handle);
    if (!q) throw new Error(`reply to unknown handle ${handle}`);
    const error = h.readUInt32BE(4);
    if (error) {
      tally.failed++;
      if (error !== EIO || !this.expect.isBad(q.offset, q.length)) tally.wrong.push(`error ${error} for read ${q.offset}+${q.length}`);
      return handle;
    }
    if (this.expect.isBad(q.offset, q.length)) tally.wrong.push(`read ${q.offset}+${q.length} over the damaged object succeeded`);
    this.check(q, q.offset, Buffer.from(await this.r.read(q.length)), tally);
    return handle;
  }

  /** One structured chunk; the handle when it ended its reply. */
  private async chunk(pending: Map<bigint, { offset: number; length: number; covered: number; failed?: boolean }>, tally: Tally): Promise<bigint | null> {
    const h = await this.r.read(20);
    if (h.readUInt32BE(0) !== 0x668e33ef) throw new Error('bad structured reply magic');
    const flags = h.readUInt16BE(4);
    const type = h.readUInt16BE(6);
    const handle = h.readBigUInt64BE(8);
    const data = Buffer.from(await this.r.read(h.readUInt32BE(16)));
    const q = pending.get(handle);
    if (!q) throw new Error(`chunk for unknown handle ${handle}`);
    if (type === 1) {
      const at = Number(data.readBigUInt64BE(0));
      this.check(q, at, data.subarray(8), tally);
      q.covered += data.length - 8;
    } else if (type === 2) {
      const at = Number(data.readBigUInt64BE(0));
      const length = data.readUInt32BE(8);
      if (!this.expect.image.subarray(at, at + length).every((b) => b === 0)) tally.wrong.push(`hole chunk ${at}+${length} over data`);
      q.covered += length;
    } else if (type === 2 ** 15 + 1) {
      q.failed = true;
      tally.failed++;
      if (data.readUInt32BE(0) !== EIO || !this.expect.isBad(q.offset, q.length)) tally.wrong.push(`error ${data.readUInt32BE(0)} for read ${q.offset}+${q.length}`);
    } else if (type !== 0) tally.wrong.push(`chunk type ${type}`);
    if (!(flags & 1)) return null;
    if (!q.failed && q.covered !== q.length) tally.wrong.push(`read ${q.offset}+${q.length}: ${q.covered} bytes answered`);
    if (!q.failed && this.expect.isBad(q.offset, q.length)) tally.wrong.push(`read ${q.offset}+${q.length} over the damaged object succeeded`);
    return handle;
  }

  close(): void {
    this.sock.write(request(CMD.DISC, 0, 0));
    this.sock.end();
  }
}
