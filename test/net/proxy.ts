/**
 * A tiny man-in-the-middle HTTP proxy for tests: forwards to a target,
 * optionally rewrites object bodies (corruption) and can cut every
 * connection after N object responses (a network failure mid-pull). Each
 * object in a batch answer counts as one object response, is rewritten
 * alike, and a cut inside a batch still delivers the records before it.
 */
import http from 'node:http';
import { closeServer, listen } from '../../src/net/wire/http-api.js';
import { BATCH_PATH } from '../../src/net/wire/batch.js';

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
  const cutAll = () => {
    state.cut = true;
    server.close();
    server.closeAllConnections();
  };
  /** Batch records through transform and cutAfter, as if each were one object response. */
  const rewriteBatch = (body: Buffer): { records: Buffer; cut: boolean } => {
    const out: Buffer[] = [];
    for (let off = 0; off < body.length;) {
      const digest = body.toString('hex', off, off + 32);
      const len = body.readUInt32BE(off + 32);
      let obj = body.subarray(off + 36, off + 36 + len);
      off += 36 + len;
      const n = ++state.objectResponses;
      if (opts.cutAfter !== undefined && n > opts.cutAfter) return { records: Buffer.concat(out), cut: true };
      if (opts.transform) obj = opts.transform(digest, obj, n);
      const head = Buffer.alloc(36);
      head.write(digest, 0, 32, 'hex');
      head.writeUInt32BE(obj.length, 32);
      out.push(head, obj);
    }
    return { records: Buffer.concat(out), cut: false };
  };
  const server = http.createServer((req, res) => {
    if (state.cut) return void req.socket.destroy();
    const up = http.request(target + req.url, { method: req.method, headers: { ...req.headers, host: new URL(target).host }, agent }, (ur) => {
      const parts: Buffer[] = [];
      ur.on('data', (b: Buffer) => parts.push(b));
      ur.on('end', () => {
        let body: Buffer = Buffer.concat(parts);
        const m = /^\/v1\/objects\/([0-9a-f]{64})$/.exec(req.url ?? '');
        if (req.url === BATCH_PATH && ur.statusCode === 200) {
          const { records, cut } = rewriteBatch(body);
          const headers = { ...ur.headers, 'content-length': String(cut ? body.length : records.length) };
          delete headers['transfer-encoding'];
          res.writeHead(200, headers);
          if (!cut) return void res.end(records);
          // the records before the cut arrive, then the connection drops
          res.write(records, () => cutAll());
          return;
        }
        if (m && ur.statusCode === 200 && req.method === 'GET') {
          const n = ++state.objectResponses;
          if (opts.transform) body = opts.transform(m[1]!, body, n);
          if (opts.cutAfter !== undefined && n > opts.cutAfter) return cutAll();
        }
        const headers = { ...ur.headers, 'content-length': String(body.length) };
        delete headers['transfer-encoding'];
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
