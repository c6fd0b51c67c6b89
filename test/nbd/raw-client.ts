/**
 * A minimal NBD client on a raw socket, for tests that must send what qemu
 * never would. Numbers are written out here from doc/proto.md, not imported
 * from src/nbd/protocol.ts, so a wrong constant there cannot hide itself.
 */
import net from 'node:net';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { vmdnOk, vmdnStart, waitFor } from '../helpers/cli.js';
import { ext4Disk } from '../helpers/ext4-disk.js';
import { mulberry32 } from '../helpers/rng.js';

export const IHAVEOPT = Buffer.from('IHAVEOPT');
export const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 };
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6, BLOCK_STATUS: 7 };
/** Structured reply chunk types, and the base:allocation flags. */
export const RT = { NONE: 0, OFFSET_DATA: 1, OFFSET_HOLE: 2, BLOCK_STATUS: 5, ERROR: 2 ** 15 + 1, ERROR_OFFSET: 2 ** 15 + 2 };
export const REP_META_CONTEXT = 4;
export const REP_ERR_INVALID = 2 ** 31 + 3;
export const CMD_FLAG_DF = 1 << 2;
export const CMD_FLAG_REQ_ONE = 1 << 3;
export const TFLAG_SEND_DF = 1 << 7;
export const REP_ACK = 1;
export const REP_ERR_UNSUP = 2 ** 31 + 1;
export const EINVAL = 22;
export const EPERM = 1;

export const hasQemuTools = () => ['qemu-img', 'qemu-io'].every((t) => spawnSync(t, ['--version']).status === 0);

export function option(opt: number, data: Buffer = Buffer.alloc(0), length = data.length): Buffer {
  const h = Buffer.alloc(16);
  IHAVEOPT.copy(h, 0);
  h.writeUInt32BE(opt, 8);
  h.writeUInt32BE(length, 12);
  return Buffer.concat([h, data]);
}

/** NBD_OPT_GO / NBD_OPT_INFO data: name, then the info types asked for. */
export function goData(name: string, infos: number[] = [3]): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((t, i) => b.writeUInt16BE(t, 4 + n.length + 2 + 2 * i));
  return b;
}

/** NBD_OPT_{LIST,SET}_META_CONTEXT data: export name, query count, queries. */
export function metaData(name: string, queries: string[], count = queries.length): Buffer {
  const parts = [Buffer.alloc(4), Buffer.from(name), Buffer.alloc(4)];
  parts[0]!.writeUInt32BE(parts[1]!.length);
  parts[2]!.writeUInt32BE(count >>> 0);
  for (const q of queries) {
    const l = Buffer.alloc(4);
    l.writeUInt32BE(Buffer.byteLength(q));
    parts.push(l, Buffer.from(q));
  }
  return Buffer.concat(parts);
}

export function request(type: number, offset: bigint | number, length: number, opts: { handle?: number; flags?: number; data?: Buffer } = {}): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(0x25609513, 0);
  b.writeUInt16BE(opts.flags ?? 0, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(BigInt(opts.handle ?? 1), 8);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length >>> 0, 24);
  return opts.data ? Buffer.concat([b, opts.data]) : b;
}

export class RawConn {
  private buf = Buffer.alloc(0);
  closed = false;
  /** Bytes the server sent on this connection so far. */
  received = 0;
  private wake?: () => void;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.received += d.length;
      this.wake?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    sock.on('error', () => undefined);
  }

  static connect(path: string): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path);
      s.once('connect', () => resolve(new RawConn(s)));
      s.once('error', reject);
    });
  }

  send(b: Buffer): void {
    this.sock.write(b);
  }

  /** Exactly n bytes, or null if the server closed first; throws after `ms`. */
  async read(n: number, ms = 10_000): Promise<Buffer | null> {
    const t0 = Date.now();
    while (this.buf.length < n) {
      if (this.closed) return null;
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves true once the server closed the connection (reading and dropping whatever it sends first). */
  async closedWithin(ms: number): Promise<boolean> {
    const t0 = Date.now();
    while (!this.closed && Date.now() - t0 < ms) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  /** Greeting and client flags (fixed newstyle + no zeroes); returns the handshake flags. */
  async greet(): Promise<number> {
    const g = (await this.read(18))!;
    if (g.toString('latin1', 0, 16) !== 'NBDMAGICIHAVEOPT') throw new Error('bad greeting');
    this.send(Buffer.from([0, 0, 0, 3]));
    return g.readUInt16BE(16);
  }

  /** One option reply: header fields and data. */
  async optReply(): Promise<{ option: number; type: number; data: Buffer } | null> {
    const h = await this.read(20);
    if (!h) return null;
    if (h.readBigUInt64BE(0) !== 0x3e889045565a9n) throw new Error('bad option reply magic');
    const data = (await this.read(h.readUInt32BE(16)))!;
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
  }

  /** Handshake through NBD_OPT_GO; returns the export size and transmission flags. */
  async go(name = ''): Promise<{ size: bigint; flags: number }> {
    await this.greet();
    this.send(option(OPT.GO, goData(name)));
    let size = -1n;
    let flags = 0;
    for (;;) {
      const r = await this.optReply();
      if (!r) throw new Error('closed during GO');
      if (r.type === REP_ACK) return { size, flags };
      if (r.type !== 3) throw new Error(`GO failed: type ${r.type} ${r.data}`);
      if (r.data.readUInt16BE(0) === 0) [size, flags] = [r.data.readBigUInt64BE(2), r.data.readUInt16BE(10)];
    }
  }

  /** One structured reply chunk (or, if the server sent a simple reply, that as type -1 with its error). */
  async chunk(): Promise<{ flags: number; type: number; handle: bigint; data: Buffer; error?: number } | null> {
    const m = await this.read(4);
    if (!m) return null;
    if (m.readUInt32BE(0) === 0x67446698) {
      const h = (await this.read(12))!;
      return { flags: 1, type: -1, handle: h.readBigUInt64BE(4), data: Buffer.alloc(0), error: h.readUInt32BE(0) };
    }
    if (m.readUInt32BE(0) !== 0x668e33ef) throw new Error('bad structured reply magic');
    const h = (await this.read(16))!;
    const data = (await this.read(h.readUInt32BE(12)))!;
    return { flags: h.readUInt16BE(0), type: h.readUInt16BE(2), handle: h.readBigUInt64BE(4), data, ...(h.readUInt16BE(2) >= 2 ** 15 ? { error: data.readUInt32BE(0) } : {}) };
  }

  /** Chunks until one with NBD_REPLY_FLAG_DONE. */
  async chunks(): Promise<Array<NonNullable<Awaited<ReturnType<RawConn['chunk']>>>>> {
    const out = [];
    for (;;) {
      const c = await this.chunk();
      if (!c) throw new Error('closed mid-reply');
      out.push(c);
      if (c.flags & 1) return out;
    }
  }

  /** Option replies up to the final one (ACK or an error). */
  async optReplies(): Promise<Array<{ option: number; type: number; data: Buffer }>> {
    const out = [];
    for (;;) {
      const r = await this.optReply();
      if (!r) throw new Error('closed during option');
      out.push(r);
      if (r.type !== REP_META_CONTEXT && r.type !== 2 && r.type !== 3) return out;
    }
  }

  /** A simple reply: error and (for a successful read of `readLength`) data. */
  async reply(readLength = 0): Promise<{ error: number; handle: bigint; data: Buffer } | null> {
    const h = await this.read(16);
    if (!h) return null;
    if (h.readUInt32BE(0) !== 0x67446698) throw new Error('bad reply magic');
    const error = h.readUInt32BE(4);
    const data = error === 0 && readLength ? await this.read(readLength) : Buffer.alloc(0);
    if (!data) return null;
    return { error, handle: h.readBigUInt64BE(8), data };
  }

  destroy(): void {
    this.sock.destroy();
  }
}

/** Start `vmdn nbd` and wait until it listens; returns its JSON and process. */
export async function startNbd(store: string, args: string[]) {
  const run = vmdnStart(store, ['nbd', ...args]);
  let exited = false;
  run.done.then(() => (exited = true));
  await waitFor(() => exited || run.output().stdout.trim().endsWith('}'), 20_000, 'vmdn nbd to listen');
  if (exited) throw new Error(`vmdn nbd exited: ${run.output().stderr}`);
  const info = JSON.parse(run.output().stdout);
  return {
    ...run,
    info,
    /** Peak resident memory (VmHWM) so far, in bytes. */
    peakRss: () => Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${run.child.pid}/status`, 'utf8'))![1]) * 1024,
    alive: () => run.child.exitCode === null && run.child.signalCode === null,
    stop: async () => {
      run.child.kill('SIGTERM');
      return run.done;
    },
  };
}

/**
 * Build at `disk` an ext4 image of `sizeMiB` holding 2 MiB of seeded random bytes
 * (a tree made under `dir`), import it into `store` as img:1; returns its bytes.
 */
export function importRandomExt4(dir: string, store: string, disk: string, seed: number, sizeMiB: number): Buffer {
  const tree = path.join(dir, 'tree');
  fs.mkdirSync(tree);
  const rnd = mulberry32(seed);
  fs.writeFileSync(path.join(tree, 'data.bin'), Buffer.from(Array.from({ length: 2 << 20 }, () => Math.floor(rnd() * 256))));
  ext4Disk(tree, disk, { sizeMiB });
  const image = fs.readFileSync(disk);
  vmdnOk(store, ['import', disk, '--name', 'img:1']);
  return image;
}
