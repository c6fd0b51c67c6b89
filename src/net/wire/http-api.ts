/**
 * The vmdn HTTP API (docs/http-api.md), shared by origin, edge and clients:
 * the route table, cache headers, Range parsing, token check and the small
 * response helpers. Objects are immutable and content-addressed, so every
 * object response is cacheable forever by any standard HTTP cache.
 */
import http from 'node:http';
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createHash, timingSafeEqual } from 'node:crypto';
import { isDigest, type Digest } from '../../store/digest.js';
import { parseImageRef, type ImageRef } from '../../store/image-name.js';
import { asVmdnError, VmdnError } from '../../errors.js';

export const OBJECT_CACHE_CONTROL = 'public, max-age=31536000, immutable';
/** Names move; caches may reuse a resolution only briefly. */
export const REF_CACHE_CONTROL = 'public, max-age=5';
export const NO_STORE = 'no-store';
/** Answers that depend on the client's token (a private image's name, list or objects): no shared cache may keep them. */
export const PRIVATE_REF_CACHE_CONTROL = 'private, max-age=5';
export const PRIVATE_OBJECT_CACHE_CONTROL = 'private, max-age=31536000, immutable';
/** Encoded objects are at most ~16 MiB; manifests of huge disks are larger but far below this. */
export const MAX_UPLOAD = 256 * 1024 * 1024;
export const MAX_MISSING_QUERY = 100_000;
/** Objects up to this size are served from one read; larger ones are streamed. */
const SMALL_OBJECT = 1 << 20;

export type Route =
  | { kind: 'images' }
  | { kind: 'ref'; ref: ImageRef }
  | { kind: 'object'; digest: Digest }
  | { kind: 'profile'; manifest: Digest }
  | { kind: 'missing' }
  | { kind: 'batch' }
  | { kind: 'pack' }
  | { kind: 'stats' }
  | { kind: 'metrics' }
  | { kind: 'health' }
  | { kind: 'access' };

/** Map a request path to a route; undefined for anything unknown (404). */
export function route(pathname: string): Route | undefined {
  if (pathname === '/v1/images') return { kind: 'images' };
  if (pathname === '/v1/objects/missing') return { kind: 'missing' };
  if (pathname === '/v1/objects/batch') return { kind: 'batch' };
  if (pathname === '/v1/objects/pack') return { kind: 'pack' };
  if (pathname === '/stats') return { kind: 'stats' };
  if (pathname === '/metrics') return { kind: 'metrics' };
  if (pathname === '/health') return { kind: 'health' };
  if (pathname === '/v1/access') return { kind: 'access' };
  const obj = /^\/v1\/objects\/([0-9a-f]{64})$/.exec(pathname);
  if (obj) return { kind: 'object', digest: obj[1]! };
  const prof = /^\/v1\/profiles\/([0-9a-f]{64})$/.exec(pathname);
  if (prof) return { kind: 'profile', manifest: prof[1]! };
  if (pathname.startsWith('/v1/images/')) {
    // names may contain '/', tags may not: the tag is the last segment
    try {
      const rest = decodeURIComponent(pathname.slice('/v1/images/'.length));
      const i = rest.lastIndexOf('/');
      if (i <= 0) return undefined;
      return { kind: 'ref', ref: parseImageRef(`${rest.slice(0, i)}:${rest.slice(i + 1)}`) };
    } catch {
      return undefined; // malformed escapes or names: not a route
    }
  }
  return undefined;
}

export const refPath = (r: ImageRef) => `/v1/images/${r.name.split('/').map(encodeURIComponent).join('/')}/${encodeURIComponent(r.tag)}`;
export const objectUrlPath = (d: Digest) => `/v1/objects/${d}`;
/** A manifest's boot profile pointer: mutable (a new recording replaces it), so cached only briefly, as names are. */
export const profilePath = (manifest: Digest) => `/v1/profiles/${manifest}`;

/** A client asking caches to go back to the source (after a hash failure). */
export function wantsRefetch(req: http.IncomingMessage): boolean {
  return /\bno-cache\b/.test(String(req.headers['cache-control'] ?? ''));
}

/**
 * Single-range `bytes=a-b`, `bytes=a-`, `bytes=-n`. Returns the inclusive range,
 * 'unsatisfiable' (416), or null to ignore the header and send everything
 * (multi-range and malformed headers, as RFC 9110 allows).
 */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  let end = m[2] === '' ? size - 1 : Number(m[2]);
  if (m[2] !== '' && end < start) return null;
  if (start >= size) return 'unsatisfiable';
  if (end >= size) end = size - 1;
  return { start, end };
}

export const etagOf = (d: Digest) => `"${d}"`;

function objectHeaders(res: http.ServerResponse, digest: Digest): http.OutgoingHttpHeaders {
  // a server that set its own (PRIVATE_OBJECT_CACHE_CONTROL for a private image's object) keeps it
  const cc = (res.getHeader('cache-control') as string | undefined) ?? OBJECT_CACHE_CONTROL;
  return { 'content-type': 'application/zstd', 'cache-control': cc, etag: etagOf(digest), 'accept-ranges': 'bytes' };
}

/** Conditional and range handling shared by file and buffer bodies; returns the byte range to send, or null when done. */
function prepareObject(req: http.IncomingMessage, res: http.ServerResponse, digest: Digest, size: number): { start: number; end: number } | null {
  const headers = objectHeaders(res, digest);
  const inm = req.headers['if-none-match'];
  if (inm && (inm === '*' || inm.split(',').map((s) => s.trim().replace(/^W\//, '')).includes(etagOf(digest)))) {
    res.writeHead(304, headers).end();
    return null;
  }
  const ifRange = req.headers['if-range'];
  const range = ifRange && ifRange !== etagOf(digest) ? null : parseRange(req.headers.range, size);
  if (range === 'unsatisfiable') {
    res.writeHead(416, { ...headers, 'content-range': `bytes */${size}` }).end();
    return null;
  }
  if (range) {
    res.writeHead(206, { ...headers, 'content-length': range.end - range.start + 1, 'content-range': `bytes ${range.start}-${range.end}/${size}` });
  } else {
    res.writeHead(200, { ...headers, 'content-length': size });
  }
  if (req.method === 'HEAD' || size === 0) {
    res.end();
    return null;
  }
  return range ?? { start: 0, end: size - 1 };
}

/**
 * Serve an encoded object file. Resolves to the bytes sent; rejects (before
 * any header) if the file is gone. Objects up to SMALL_OBJECT (nearly all)
 * are read synchronously: they are page-cache hot on a busy server, and four
 * thread-pool round trips (open, fstat, read, close) cost several times the
 * read itself, most of an object request's time on a small machine. Larger
 * ones are streamed.
 */
export async function serveObjectFile(req: http.IncomingMessage, res: http.ServerResponse, digest: Digest, file: string): Promise<number> {
  const fd = fs.openSync(file, 'r');
  let size: number;
  try {
    size = fs.fstatSync(fd).size;
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  if (size <= SMALL_OBJECT) {
    let buf: Buffer;
    try {
      buf = Buffer.allocUnsafeSlow(size);
      buf = buf.subarray(0, fs.readSync(fd, buf, 0, size, 0));
    } finally {
      fs.closeSync(fd);
    }
    return serveObjectBuffer(req, res, digest, buf);
  }
  const r = prepareObject(req, res, digest, size);
  if (!r) {
    fs.closeSync(fd);
    return 0;
  }
  // the open descriptor keeps the bytes readable even if eviction unlinks the file meanwhile
  const stream = fs.createReadStream('', { fd, start: r.start, end: r.end, autoClose: true });
  // pipeline destroys the file stream (closing the descriptor) if the client goes away mid-body
  pipeline(stream, res).catch(() => {});
  return r.end - r.start + 1;
}

export function serveObjectBuffer(req: http.IncomingMessage, res: http.ServerResponse, digest: Digest, bytes: Uint8Array): number {
  const r = prepareObject(req, res, digest, bytes.length);
  if (!r) return 0;
  res.end(Buffer.from(bytes.buffer, bytes.byteOffset + r.start, r.end - r.start + 1));
  return r.end - r.start + 1;
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, cacheControl = NO_STORE): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': cacheControl, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** 503 with Retry-After: the server is at its limit for this kind of work; the client may wait or go another way. */
export function sendBusy(res: http.ServerResponse, retryAfterSeconds: number, message: string): void {
  res.setHeader('retry-after', String(retryAfterSeconds));
  sendJson(res, 503, { error: { code: 'E_UNREACHABLE', message } });
}

/** Errors keep their code on the wire; the status comes from the one table in errors.ts. */
export function sendError(res: http.ServerResponse, err: unknown): void {
  const e = asVmdnError(err);
  if (res.headersSent) {
    res.destroy(e);
    return;
  }
  const headers: Record<string, string> = e.code === 'E_AUTH' ? { 'www-authenticate': 'Bearer realm="vmdn"' } : {};
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  sendJson(res, e.httpStatus, { error: e.toJSON() });
}

export async function readBody(req: http.IncomingMessage, limit = MAX_UPLOAD): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new VmdnError('E_USAGE', `request body of ${declared} bytes exceeds ${limit}`);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const b of req as AsyncIterable<Buffer>) {
    n += b.length;
    if (n > limit) throw new VmdnError('E_USAGE', `request body exceeds ${limit} bytes`);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** Nesting deeper than any vmdn document: the parse succeeds, but what walks the result later (String(), JSON.stringify) would overflow the stack. */
export const MAX_JSON_DEPTH = 32;

/** JSON.parse, refusing (SyntaxError) nesting deeper than `maxDepth` before parsing. */
export function parseJson(text: string, maxDepth = MAX_JSON_DEPTH): unknown {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) throw new SyntaxError(`JSON nested deeper than ${maxDepth} levels`);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return JSON.parse(text);
}

/** A request body that must be a JSON object (every vmdn request body is one: `null`, a number or an array is refused here, not dereferenced later). */
export async function readJson<T>(req: http.IncomingMessage, limit: number): Promise<T> {
  let body: unknown;
  try {
    body = parseJson((await readBody(req, limit)).toString('utf8'));
  } catch (err) {
    if (err instanceof VmdnError) throw err;
    throw new VmdnError('E_USAGE', 'request body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new VmdnError('E_USAGE', 'request body must be a JSON object');
  return body as T;
}

/**
 * Bearer token check in constant time: both sides are hashed first so the
 * comparison never depends on the token's length or content.
 */
export function tokenMatches(authorization: string | undefined, token: string | undefined): boolean {
  if (!token) return false;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  const given = createHash('sha256').update(m ? m[1]! : '').digest();
  const want = createHash('sha256').update(token).digest();
  return timingSafeEqual(given, want) && m !== null;
}

export function requireToken(req: http.IncomingMessage, token: string | undefined): void {
  if (!token) throw new VmdnError('E_AUTH', 'uploads are disabled: start the origin with --token-file or VMDN_TOKEN');
  if (!tokenMatches(req.headers.authorization, token)) throw new VmdnError('E_AUTH', 'missing or invalid bearer token');
}

/** HOST:PORT (IPv6 as [::1]:PORT); port 0 picks a free one. */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(s);
  if (!m) throw new VmdnError('E_USAGE', `--listen expects HOST:PORT, got "${s}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new VmdnError('E_USAGE', `port ${port} out of range`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/** Listen and resolve to the base URL actually bound. */
export function listen(server: http.Server, host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address() as { address: string; port: number };
      const h = a.address.includes(':') ? `[${a.address}]` : a.address;
      resolve(`http://${h}:${a.port}`);
    });
  });
}

/** Close the server and every connection it holds (keep-alive sockets would otherwise keep it open). */
export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export function isDigestList(v: unknown): v is Digest[] {
  return Array.isArray(v) && v.length <= MAX_MISSING_QUERY && v.every(isDigest);
}

/** Prometheus text format from flat counters. */
export function prometheus(prefix: string, counters: Record<string, number>, help: Record<string, string> = {}): string {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(counters)) {
    const name = `${prefix}_${k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
    if (help[k]) lines.push(`# HELP ${name} ${help[k]}`);
    lines.push(`# TYPE ${name} ${/total$/.test(name) ? 'counter' : 'gauge'}`, `${name} ${v}`);
  }
  return lines.join('\n') + '\n';
}
