/**
 * One HTTP exchange with a vmdn server, no retries (http-store.ts retries):
 * the answer bounded in size, the attempt in time (an idle timeout and an
 * overall deadline that grows with the bytes moved), redirects refused; and
 * the server's typed errors rebuilt from its JSON answers.
 */
import http from 'node:http';
import https from 'node:https';
import { VmdnError, type ErrorCode, ERROR_CODES } from '../../errors.js';
import { parseJson } from '../wire/http-api.js';

/** A name lookup's answer, and what is kept of an error page. */
export const SMALL_BODY = 64 << 10;

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface DeadlineLimits {
  deadlineMs: number;
  minBytesPerSecond: number;
}

export interface ExchangeLimits extends DeadlineLimits {
  base: string;
  agent: http.Agent;
  /** Idle timeout: the attempt fails when no byte arrives for this long. */
  timeoutMs: number;
}

/**
 * Arm the overall deadline of one attempt on `req`: `moved()` is the bytes
 * it has carried so far, each of which extends it by 1/minBytesPerSecond s.
 * Returns the disarm function.
 */
export function armDeadline(req: http.ClientRequest, moved: () => number, o: DeadlineLimits): () => void {
  const started = Date.now();
  const until = () => started + o.deadlineMs + (moved() * 1000) / o.minBytesPerSecond;
  let timer: NodeJS.Timeout;
  const arm = () => {
    timer = setTimeout(() => {
      if (Date.now() < until()) return arm();
      const s = ((Date.now() - started) / 1000).toFixed(1);
      req.destroy(Object.assign(new Error(`timed out: ${moved()} bytes in ${s} s, slower than ${o.minBytesPerSecond} bytes/s after ${o.deadlineMs} ms`), { code: 'ETIMEDOUT' }));
    }, Math.max(10, until() - Date.now()));
  };
  arm();
  return () => clearTimeout(timer);
}

/**
 * One HTTP exchange, no retries. The answer is held to `maxBody` bytes (an
 * error answer's body to its first SMALL_BODY), the attempt to the deadline;
 * redirects are refused: objects and names live at the URL given.
 */
export function exchangeOnce(l: ExchangeLimits, method: string, path: string, headers: http.OutgoingHttpHeaders, body: Uint8Array | undefined, maxBody: number, signal?: AbortSignal): Promise<Reply> {
  const mod = l.base.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    let moved = body?.length ?? 0;
    let disarm = () => {};
    const fail = (err: Error) => {
      disarm();
      req.destroy();
      reject(err);
    };
    const req = mod.request(l.base + path, { method, headers, agent: l.agent, signal }, (res) => {
      const status = res.statusCode ?? 0;
      const what = `${method} ${l.base}${path}`;
      if (status >= 300 && status < 400) {
        const to = res.headers.location ? ` to ${String(res.headers.location).slice(0, 200)}` : '';
        return fail(new VmdnError('E_UNREACHABLE', `${what}: HTTP ${status} redirect${to}; vmdn does not follow redirects, give the server's final URL`, { url: l.base, status }));
      }
      const isError = status >= 400;
      const limit = isError ? SMALL_BODY : maxBody;
      const tooLarge = (n: number) => new VmdnError('E_UNREACHABLE', `${what}: answer of ${n} bytes or more, larger than this request can return (${limit})`, { url: l.base, limit });
      const declared = Number(res.headers['content-length'] ?? 0);
      if (!isError && method !== 'HEAD' && declared > limit) return fail(tooLarge(declared));
      const parts: Buffer[] = [];
      let n = 0;
      res.on('data', (b: Buffer) => {
        moved += b.length;
        if (n + b.length > limit) {
          if (!isError) return fail(tooLarge(n + b.length));
          // an error page is only read for its message: keep its start
          parts.push(b.subarray(0, limit - n));
          disarm();
          req.destroy();
          return resolve({ status, headers: res.headers, body: Buffer.concat(parts) });
        }
        n += b.length;
        parts.push(b);
      });
      res.on('error', reject);
      res.on('end', () => {
        disarm();
        const buf = Buffer.concat(parts);
        const want = res.headers['content-length'];
        // a cut connection can look like a short but complete body
        if (method !== 'HEAD' && want !== undefined && Number(want) !== buf.length && status !== 304) {
          reject(Object.assign(new Error(`short body: ${buf.length} of ${want} bytes`), { code: 'ECONNRESET' }));
        } else resolve({ status, headers: res.headers, body: buf });
      });
    });
    disarm = armDeadline(req, () => moved, l);
    req.setTimeout(l.timeoutMs, () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (err) => {
      disarm();
      reject(err);
    });
    req.on('close', disarm);
    req.end(body);
  });
}

export function errorText(r: Reply): string {
  try {
    return `: ${String((parseJson(r.body.toString('utf8')) as { error: { message: string } }).error.message).slice(0, 500)}`;
  } catch {
    return '';
  }
}

/** Rebuild the server's typed error (its code travels in the JSON body). */
export function remoteError(r: Reply, what: string): VmdnError {
  let code: ErrorCode = r.status === 404 ? 'E_NOT_FOUND' : r.status === 401 || r.status === 403 ? 'E_AUTH' : 'E_USAGE';
  let message = `${what}: HTTP ${r.status}`;
  try {
    const e = (parseJson(r.body.toString('utf8')) as { error: { code: unknown; message: unknown } }).error;
    if (typeof e.code === 'string' && Object.hasOwn(ERROR_CODES, e.code)) code = e.code as ErrorCode;
    if (typeof e.message === 'string') message = `${what}: ${e.message.slice(0, 500)}`;
  } catch {
    /* not one of ours (e.g. a proxy's HTML page) */
  }
  return new VmdnError(code, message, { status: r.status });
}
