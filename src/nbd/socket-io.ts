/**
 * Exact-length reads from a socket with bounded buffering (the socket is
 * paused while more than what is asked for plus a little is waiting), writes
 * that wait for the kernel to take them, and a byte budget shared by all
 * connections so many clients with large requests cannot exhaust memory.
 */
import type { Socket } from 'node:net';

/** The peer went away (or sent EOF) before the bytes we needed arrived. */
export class PeerClosed extends Error {
  constructor() {
    super('peer closed the connection');
  }
}

const SLACK = 1 << 20;

export class SocketReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private want = 0;
  private ended = false;
  private wake: (() => void) | null = null;

  constructor(private readonly sock: Socket) {
    sock.on('data', (b: Buffer) => {
      this.chunks.push(b);
      this.have += b.length;
      if (this.have > this.want + SLACK) sock.pause();
      this.notify();
    });
    const end = () => {
      this.ended = true;
      this.notify();
    };
    sock.on('end', end);
    sock.on('close', end);
    sock.on('error', end);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Exactly `n` bytes (the caller bounds n), or PeerClosed. */
  async read(n: number): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    this.want = n;
    while (this.have < n) {
      if (this.ended) throw new PeerClosed();
      this.sock.resume();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    this.want = 0;
    let out: Buffer;
    if (this.chunks[0]!.length >= n) {
      out = this.chunks[0]!.subarray(0, n);
      this.chunks[0] = this.chunks[0]!.subarray(n);
      if (this.chunks[0].length === 0) this.chunks.shift();
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.have -= n;
    if (this.have <= SLACK) this.sock.resume();
    return out;
  }
}

/**
 * Queue `parts` on the socket and resolve once the kernel took them (or the socket is gone).
 * `written` is called once no part is referenced any more: the kernel copied them all, or
 * the socket was destroyed (resolving says only that the socket's buffer has room again).
 */
export function writeAll(sock: Socket, parts: Uint8Array[], written?: () => void): Promise<void> {
  if (sock.destroyed || !sock.writable || parts.length === 0) {
    written?.();
    return Promise.resolve();
  }
  let ok = true;
  // corked, the parts leave in one writev, not one syscall (and packet) each
  if (parts.length > 1) sock.cork();
  // a write's callback runs after it completed or failed (destroyed sockets fail pending writes), and
  // the corked parts complete together: the last one's callback says all are done
  const last = parts.length - 1;
  for (let i = 0; i <= last; i++) ok = (i === last && written ? sock.write(parts[i]!, () => written()) : sock.write(parts[i]!)) && ok;
  if (parts.length > 1) sock.uncork();
  return ok ? Promise.resolve() : drainOf(sock);
}

const draining = new WeakMap<Socket, Promise<void>>();

/**
 * One wait per socket for 'drain' (or 'close'), shared by every reply that
 * found the buffer full: a listener pair per waiting reply piled up past
 * Node's MaxListeners warning with a client's reads in flight.
 */
function drainOf(sock: Socket): Promise<void> {
  let p = draining.get(sock);
  if (!p) {
    p = new Promise<void>((resolve) => {
      const done = () => {
        sock.off('drain', done);
        sock.off('close', done);
        // forgotten before anyone resumes: a write after this drain waits for the next one
        draining.delete(sock);
        resolve();
      };
      sock.on('drain', done);
      sock.on('close', done);
    });
    draining.set(sock, p);
  }
  return p;
}

/** Bytes in flight across all connections; one request larger than the whole budget still runs alone. */
export class ByteBudget {
  private used = 0;
  private readonly waiting: Array<{ n: number; go: () => void }> = [];

  constructor(readonly max: number) {}

  async acquire(n: number): Promise<void> {
    if (this.used === 0 || this.used + n <= this.max) {
      this.used += n;
      return;
    }
    await new Promise<void>((go) => this.waiting.push({ n, go }));
  }

  release(n: number): void {
    this.used -= n;
    while (this.waiting.length > 0) {
      const next = this.waiting[0]!;
      if (this.used !== 0 && this.used + next.n > this.max) break;
      this.waiting.shift();
      this.used += next.n;
      next.go();
    }
  }
}
