/**
 * An NBD server for one BlockDevice, on a Unix socket or TCP. Each connection:
 * the handshake (handshake.ts), then requests read one after another and
 * handled a few at a time, each answered with a simple reply, or, once
 * negotiated, structured replies for reads and block status (replies.ts).
 * Whatever the
 * client sends is checked (magic, flags, range, length); what cannot be
 * answered in protocol closes that connection only. Memory is bounded: a
 * request's bytes are counted against a budget shared by all connections
 * before they are read or allocated, and replies wait for the kernel.
 */
import net from 'node:net';
import fs from 'node:fs';
import { BlockDevice } from './device.js';
import { handshake, type ExportInfo } from './handshake.js';
import { ByteBudget, PeerClosed, SocketReader, writeAll } from './socket-io.js';
import { blockStatus, errorChunk, structuredRead } from './replies.js';
import { CMD, CMD_FLAG_DF, CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, CMD_FLAG_REQ_ONE, LIMITS, NBD_ERR, REQUEST_MAGIC, Request, SIMPLE_REPLY_MAGIC, SimpleReply, TFLAG } from './protocol.js';
import { VmdnError } from '../errors.js';

export interface NbdServerOptions {
  /** Export name (the image reference); `matches` decides which other names lead to it. */
  name: string;
  matches(name: string): boolean;
  /** Concurrent connections; more are refused. */
  maxConnections?: number;
  /** Requests handled at once per connection. */
  maxInFlight?: number;
  /** Request bytes in memory across connections. */
  budgetBytes?: number;
  /** Connection-level events (a client cut off and why), for logs. */
  onEvent?: (e: { event: 'connect' | 'close' | 'error'; why?: string; error?: unknown }) => void;
}

export interface NbdStats {
  connections: number;
  requests: number;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
}

export type ListenAddress = { socket: string } | { host: string; port: number };

/** An error reply's errno for a failed request. */
function errnoOf(err: unknown): number {
  if (err instanceof VmdnError && err.data.errno === 'EPERM') return NBD_ERR.EPERM;
  if (err instanceof VmdnError && err.code === 'E_USAGE') return NBD_ERR.EINVAL;
  return NBD_ERR.EIO;
}

export class NbdServer {
  readonly stats: NbdStats = { connections: 0, requests: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly budget: ByteBudget;
  private readonly info: ExportInfo;
  /** Our socket file, by path and inode: on close we remove it only if it is still ours. */
  private socketFile?: { path: string; ino: number };

  constructor(private readonly device: BlockDevice, private readonly opts: NbdServerOptions) {
    this.budget = new ByteBudget(opts.budgetBytes ?? LIMITS.maxRequest);
    let flags = TFLAG.HAS_FLAGS | TFLAG.SEND_FLUSH | TFLAG.SEND_FUA | TFLAG.SEND_TRIM | TFLAG.SEND_WRITE_ZEROES | TFLAG.CAN_MULTI_CONN;
    if (device.readOnly) flags |= TFLAG.READ_ONLY;
    this.info = { name: opts.name, size: device.size, flags, matches: opts.matches };
    this.server = net.createServer((s) => this.accept(s));
    this.server.maxConnections = opts.maxConnections ?? 32;
  }

  /** Listen; returns an nbd URI for clients (qemu syntax). */
  async listen(addr: ListenAddress): Promise<string> {
    if ('socket' in addr) {
      await clearStaleSocket(addr.socket);
    }
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      const done = () => {
        this.server.off('error', reject);
        resolve();
      };
      if ('socket' in addr) this.server.listen(addr.socket, done);
      else this.server.listen(addr.port, addr.host, done);
    });
    if ('socket' in addr) this.socketFile = { path: addr.socket, ino: fs.statSync(addr.socket).ino };
    if ('socket' in addr) return `nbd+unix:///${encodeURIComponent(this.opts.name)}?socket=${addr.socket}`;
    const a = this.server.address() as net.AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `nbd://${host}:${a.port}/${encodeURIComponent(this.opts.name)}`;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
    const f = this.socketFile;
    // a server started on the same path since then owns the file now
    if (f && fs.statSync(f.path, { throwIfNoEntry: false })?.ino === f.ino) fs.rmSync(f.path, { force: true });
  }

  private accept(sock: net.Socket): void {
    this.sockets.add(sock);
    this.stats.connections++;
    this.opts.onEvent?.({ event: 'connect' });
    sock.setNoDelay(true);
    // a peer that resets mid-reply must cost us nothing but this connection
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.sockets.delete(sock));
    this.serve(sock).then(
      (why) => {
        this.opts.onEvent?.({ event: 'close', why });
        sock.end();
        sock.destroySoon?.();
      },
      (err) => {
        if (!(err instanceof PeerClosed)) this.opts.onEvent?.({ event: 'error', why: (err as Error).message, error: err });
        sock.destroy();
      },
    );
  }

  /** One connection, until the client leaves or must be cut off; returns why it ended. */
  private async serve(sock: net.Socket): Promise<string> {
    const r = new SocketReader(sock);
    const hs = await handshake(sock, r, this.info);
    if (!hs.go) return hs.why;
    const { structured, allocation } = hs;
    const knownFlags = CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | (structured ? CMD_FLAG_DF : 0) | (allocation ? CMD_FLAG_REQ_ONE : 0);
    const inflight = new Set<Promise<void>>();
    const maxInFlight = this.opts.maxInFlight ?? 8;
    const reply = (handle: Uint8Array, error: number, data: Uint8Array[] = [], written?: () => void) => {
      if (error) this.stats.errors++;
      const head = SimpleReply.write({ magic: SIMPLE_REPLY_MAGIC, error, handle });
      return writeAll(sock, [head, ...data], written);
    };
    /** A READ's failure: with structured replies it must be an error chunk. */
    const readError = (handle: Uint8Array, error: number, message?: string) => {
      if (!structured) return reply(handle, error);
      this.stats.errors++;
      return errorChunk(sock, handle, error, message);
    };
    /** Run `fn` beside the requests in flight, its `bytes` counted against the budget until the reply is sent. */
    const spawn = async (bytes: number, fn: () => Promise<void>) => {
      while (inflight.size >= maxInFlight) await Promise.race(inflight);
      // fn may throw before it returns a promise: that too is this request's failure, not the connection's
      const p = Promise.resolve()
        .then(fn)
        .catch(() => undefined)
        .finally(() => {
          this.budget.release(bytes);
          inflight.delete(p);
        });
      inflight.add(p);
    };
    try {
      for (;;) {
        const q = Request.parse(await r.read(Request.size));
        if (q.magic !== REQUEST_MAGIC) return 'bad request magic';
        this.stats.requests++;
        const { type, handle, length } = q;
        const offset = q.offset > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(q.offset);
        const inRange = offset + length <= this.device.size;
        const badFlags = (q.flags & ~knownFlags) !== 0;
        const fua = (q.flags & CMD_FLAG_FUA) !== 0;
        switch (type) {
          case CMD.READ: {
            if (badFlags || length > LIMITS.maxRequest) await readError(handle, NBD_ERR.EINVAL, 'bad flags or length');
            else if (!inRange) await readError(handle, NBD_ERR.EINVAL, 'read past the end of the export');
            else if (structured) {
              await this.budget.acquire(length);
              const df = (q.flags & CMD_FLAG_DF) !== 0;
              await spawn(length, () =>
                structuredRead(sock, handle, this.device, offset, length, df).then(
                  (n) => void (this.stats.bytesRead += n),
                  (err) => readError(handle, errnoOf(err), (err as Error).message),
                ),
              );
            } else {
              await this.budget.acquire(length);
              await spawn(length, () =>
                this.device.readLeased(offset, length).then(
                  (lease) => ((this.stats.bytesRead += length), reply(handle, 0, lease.pieces, lease.release)),
                  (err) => reply(handle, errnoOf(err)),
                ),
              );
            }
            break;
          }
          case CMD.BLOCK_STATUS: {
            // without a selected context there is nothing to report (the protocol says EINVAL)
            if (!allocation || badFlags || length === 0 || !inRange) await reply(handle, NBD_ERR.EINVAL);
            else await blockStatus(sock, handle, this.device, offset, length, (q.flags & CMD_FLAG_REQ_ONE) !== 0);
            break;
          }
          case CMD.WRITE: {
            // a payload we will not read leaves the stream unparseable: answer, then hang up
            if (length > LIMITS.maxRequest) {
              await reply(handle, NBD_ERR.EINVAL);
              return `write of ${length} bytes`;
            }
            await this.budget.acquire(length);
            let data: Buffer;
            try {
              data = await r.read(length);
            } catch (err) {
              this.budget.release(length);
              throw err;
            }
            const error = badFlags ? NBD_ERR.EINVAL : this.device.readOnly ? NBD_ERR.EPERM : !inRange ? NBD_ERR.ENOSPC : 0;
            if (error) {
              this.budget.release(length);
              await reply(handle, error);
              break;
            }
            await spawn(length, () =>
              this.device.write(offset, data)
                .then(() => (fua ? this.device.flush() : undefined))
                .then(() => ((this.stats.bytesWritten += length), reply(handle, 0)), (err) => reply(handle, errnoOf(err))),
            );
            break;
          }
          case CMD.WRITE_ZEROES:
          case CMD.TRIM: {
            const error = badFlags ? NBD_ERR.EINVAL : this.device.readOnly ? NBD_ERR.EPERM : !inRange ? (type === CMD.TRIM ? NBD_ERR.EINVAL : NBD_ERR.ENOSPC) : 0;
            if (error) {
              await reply(handle, error);
              break;
            }
            // TRIM leaves the bytes as they are: the protocol lets a server ignore it
            const work = () => (type === CMD.TRIM ? Promise.resolve() : this.device.writeZeroes(offset, length));
            await spawn(0, () =>
              work().then(() => (fua ? this.device.flush() : undefined)).then(() => reply(handle, 0), (err) => reply(handle, errnoOf(err))),
            );
            break;
          }
          case CMD.FLUSH:
            await spawn(0, () => this.device.flush().then(() => reply(handle, 0), (err) => reply(handle, errnoOf(err))));
            break;
          case CMD.DISC:
            await Promise.all(inflight);
            return 'client disconnected';
          default:
            await reply(handle, NBD_ERR.EINVAL);
        }
      }
    } finally {
      await Promise.all(inflight);
    }
  }
}

/** A socket file left by a server that died is removed; a live one or another kind of file is refused. */
async function clearStaleSocket(p: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new VmdnError('E_USAGE', `${p} exists and is not a socket`, { socket: p });
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(p);
    c.once('connect', () => (c.destroy(), resolve(true)));
    c.once('error', () => resolve(false));
  });
  if (live) throw new VmdnError('E_USAGE', `${p}: a server is already listening there`, { socket: p });
  fs.rmSync(p, { force: true });
}
