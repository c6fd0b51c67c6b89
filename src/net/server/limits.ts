/**
 * Connection limits of the origin's and the edge's HTTP servers: what keeps a
 * slow or stalled client (slowloris: headers sent a byte every few seconds, or
 * a body that never ends) from holding a socket and its parser for minutes.
 *
 * Node's defaults are headersTimeout 60 s, requestTimeout 300 s, checked only
 * every 30 s (connectionsCheckingInterval): a dribbling client kept its socket
 * up to 90 s. Headers are a few hundred bytes and every honest client sends
 * them at once, so 15 s is generous; a whole request (an upload body) keeps
 * Node's 300 s, since a large object over a slow link is honest. Idle
 * keep-alive sockets close after 30 s as before.
 *
 * VMDN_HTTP_HEADERS_TIMEOUT_MS and VMDN_HTTP_REQUEST_TIMEOUT_MS override the
 * two timeouts (tests use short ones to see a slow client dropped in seconds).
 */
import type http from 'node:http';

export interface ServerLimits {
  /** All headers must have arrived this long after the request began, ms. */
  headersTimeoutMs: number;
  /** The whole request (headers and body) must have arrived by then, ms. */
  requestTimeoutMs: number;
  /** An idle keep-alive socket is closed after this, ms. */
  keepAliveTimeoutMs: number;
}

export const DEFAULT_LIMITS: ServerLimits = { headersTimeoutMs: 15_000, requestTimeoutMs: 300_000, keepAliveTimeoutMs: 30_000 };

const envMs = (v: string | undefined, d: number) => (Number(v) > 0 ? Number(v) : d);

export function limitsFromEnv(env: NodeJS.ProcessEnv = process.env): ServerLimits {
  const headersTimeoutMs = envMs(env.VMDN_HTTP_HEADERS_TIMEOUT_MS, DEFAULT_LIMITS.headersTimeoutMs);
  // Node refuses a headers timeout longer than the request timeout
  const requestTimeoutMs = Math.max(headersTimeoutMs, envMs(env.VMDN_HTTP_REQUEST_TIMEOUT_MS, DEFAULT_LIMITS.requestTimeoutMs));
  return { headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs: DEFAULT_LIMITS.keepAliveTimeoutMs };
}

/** Options for http.createServer with these limits. */
export function serverOptions(l: ServerLimits = limitsFromEnv()): http.ServerOptions {
  return {
    keepAliveTimeout: l.keepAliveTimeoutMs,
    headersTimeout: l.headersTimeoutMs,
    requestTimeout: l.requestTimeoutMs,
    // the timeouts are enforced by a sweep this often: a quarter of the headers timeout, between 250 ms and Node's 30 s
    connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(l.headersTimeoutMs / 4))),
  };
}
