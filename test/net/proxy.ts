/**
 * A tiny man-in-the-middle HTTP proxy for tests: forwards to a target,
 * optionally rewrites object bodies (corruption) and can cut every
 * connection after N object responses (a network failure mid-pull).
 */
import http from 'node:http';
import { closeServer, listen } from '../../src/net/http-api.js';

export interface ProxyOptions {
  /** Rewrite an object response body; `n` counts object responses so far (1-based). */
  transform?: (digest: string, body: Buffer, n: number) => Buffer;
  /** After this many object responses, drop all connections and stop listening. */
  cutAfter?: number;
}

export interface Proxy {
  url: string;
  objectResponses: number;
  cut: boolean;
  close(): Promise<void>;
}

export async function startProxy(target: string, opts: ProxyOptions = {}): Promise<Proxy> {
  const agent = new http.Agent({ keepAlive: true });
  const state: Proxy = { url: '', objectResponses: 0, cut: false, close: () => closeServer(server) };
  const server = http.createServer((req, res) => {
    if (state.cut) return void req.socket.destroy();
    const up = http.request(target + req.url, { method: req.method, headers: { ...req.headers, host: new URL(target).host }, agent }, (ur) => {
      const parts: Buffer[] = [];
      ur.on('data', (b: Buffer) => parts.push(b));
      ur.on('end', () => {
        let body: Buffer = Buffer.concat(parts);
        const m = /^\/v1\/objects\/([0-9a-f]{64})$/.exec(req.url ?? '');
        if (m && ur.statusCode === 200 && req.method === 'GET') {
          const n = ++state.objectResponses;
          if (opts.transform) body = opts.transform(m[1]!, body, n);
          if (opts.cutAfter !== undefined && n > opts.cutAfter) {
            state.cut = true;
            server.close();
            server.closeAllConnections();
            return;
          }
        }
        const headers = { ...ur.headers, 'content-length': String(body.length) };
        res.writeHead(ur.statusCode ?? 502, headers).end(body);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  state.url = await listen(server, '127.0.0.1', 0);
  return state;
}

/** Flip one bit near the end of a zstd frame: still a frame, wrong content (or undecodable). */
export function flipBit(body: Buffer): Buffer {
  const b = Buffer.from(body);
  b[b.length - 2]! ^= 0x10;
  return b;
}
