/**
 * What an edge may serve to whom, when its origin has private images (issue
 * 16). The edge's cache holds objects whoever's request brought them in, so
 * before it serves one it asks the origin whether the client's token may have
 * it (POST /v1/access, the client's Authorization header passed on; a client
 * with none is asked about with the edge's own token, if it has one). Answers
 * are reused for ANSWER_TTL_MS per token and object; a "public" answer for
 * everyone. While the origin says it has no private image at all (GET
 * /v1/access, reused for STATE_TTL_MS) the edge asks nothing: a public
 * origin's edge costs one small request every few seconds.
 *
 * A private object the edge does not hold is passed through from upstream
 * with the client's token, verified, and not kept (its answer says
 * Cache-Control: private).
 */
import { createHash } from 'node:crypto';
import type { Digest } from '../../store/digest.js';
import { decodeObject } from '../../store/codec.js';
import { VmdnError } from '../../errors.js';
import type http from 'node:http';
import type { HttpStore } from '../client/http-store.js';
import { isDigestList, objectUrlPath, parseJson, readJson, sendJson } from '../wire/http-api.js';

export const STATE_TTL_MS = 2000;
export const ANSWER_TTL_MS = 5000;
const MAX_ANSWERS = 100_000;

export type EdgeObjectAccess = 'public' | 'private';

export class EdgeAccess {
  private state: { at: number; private: boolean } | undefined;
  private readonly answers = new Map<string, { at: number; a: EdgeObjectAccess | null }>();

  /** `ttlMs`: both reuse times at once (tests shorten them). */
  constructor(private readonly upstream: HttpStore, private readonly ttlMs?: number) {}

  /** Does the origin have private images? (An origin without /v1/access has none.) */
  async anyPrivate(): Promise<boolean> {
    if (this.state && Date.now() - this.state.at < (this.ttlMs ?? STATE_TTL_MS)) return this.state.private;
    let yes = false;
    try {
      const r = await this.upstream.request('GET', '/v1/access', { maxBody: 4096 });
      yes = (parseJson(r.body.toString('utf8')) as { private?: unknown }).private === true;
    } catch (err) {
      if (!(err instanceof VmdnError && err.code === 'E_NOT_FOUND')) throw err;
    }
    this.state = { at: Date.now(), private: yes };
    return yes;
  }

  /**
   * For each digest: 'public', 'private' (this client may have it, others not)
   * or absent (refuse as not found). Everything is 'public' while the origin
   * has no private image.
   */
  async check(digests: Digest[], authorization: string | undefined): Promise<Map<Digest, EdgeObjectAccess>> {
    const out = new Map<Digest, EdgeObjectAccess>();
    if (!(await this.anyPrivate())) {
      for (const d of digests) out.set(d, 'public');
      return out;
    }
    const who = authorization === undefined ? 'edge' : createHash('sha256').update(authorization).digest('base64');
    const now = Date.now();
    const ask: Digest[] = [];
    for (const d of digests) {
      const hit = [this.answers.get(`*\0${d}`), this.answers.get(`${who}\0${d}`)].find((h) => h && now - h.at < (this.ttlMs ?? ANSWER_TTL_MS));
      if (hit) {
        if (hit.a) out.set(d, hit.a);
      } else ask.push(d);
    }
    if (!ask.length) return out;
    const headers = { 'content-type': 'application/json', ...(authorization !== undefined ? { authorization } : {}) };
    const r = await this.upstream.request('POST', '/v1/access', { body: Buffer.from(JSON.stringify({ digests: ask })), headers, maxBody: 16 << 20 });
    const objects = ((parseJson(r.body.toString('utf8')) as { objects?: Record<string, unknown> }).objects ?? {}) as Record<string, unknown>;
    if (this.answers.size > MAX_ANSWERS) this.answers.clear();
    for (const d of ask) {
      const a = objects[d] === 'public' || objects[d] === 'private' ? (objects[d] as EdgeObjectAccess) : null;
      this.answers.set(`${a === 'public' ? '*' : who}\0${d}`, { at: now, a });
      if (a) out.set(d, a);
    }
    return out;
  }

  /** /v1/access answered as the origin would, for an edge below this one. */
  async answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method === 'GET' || req.method === 'HEAD') return sendJson(res, 200, { private: await this.anyPrivate() });
    if (req.method !== 'POST') throw new VmdnError('E_USAGE', `${req.method} not allowed on /v1/access`);
    const body = await readJson<{ digests?: unknown }>(req, 16 << 20);
    if (!isDigestList(body.digests)) throw new VmdnError('E_USAGE', 'body must be {"digests": [up to 100000 digests]}');
    return sendJson(res, 200, { objects: Object.fromEntries(await this.check(body.digests, req.headers.authorization)) });
  }

  /** A private object fetched for this client alone, verified, not cached. */
  async passThrough(digest: Digest, authorization: string | undefined): Promise<Uint8Array> {
    const r = await this.upstream.request('GET', objectUrlPath(digest), { headers: authorization !== undefined ? { authorization } : {} });
    decodeObject(digest, r.body, `upstream ${objectUrlPath(digest)}`);
    return r.body;
  }

  /** A name's resolution, a profile or the list asked upstream with the client's token: not shared with other clients. */
  async ask(pathname: string, authorization: string): Promise<unknown> {
    const r = await this.upstream.request('GET', pathname, { headers: { authorization }, maxBody: 16 << 20 });
    return parseJson(r.body.toString('utf8'));
  }
}
