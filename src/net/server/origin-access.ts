/**
 * The origin's answers that depend on who asks (issue 16), kept out of
 * origin.ts: the cache headers of token-dependent answers, and /v1/access,
 * which an edge asks before it serves a cached object while the origin has
 * private images (docs/http-api.md, "Tokens and private images").
 */
import type http from 'node:http';
import type { Digest } from '../../store/digest.js';
import { VmdnError } from '../../errors.js';
import { isDigestList, PRIVATE_OBJECT_CACHE_CONTROL, PRIVATE_REF_CACHE_CONTROL, readJson, REF_CACHE_CONTROL, sendJson } from '../wire/http-api.js';
import type { Principal } from './auth.js';
import type { Visibility } from './visibility.js';

/** A name's resolution or the list: an anonymous answer is everyone's, an authenticated one may show private images. */
export const refCacheControl = (p: Principal): string => (p.anonymous ? REF_CACHE_CONTROL : PRIVATE_REF_CACHE_CONTROL);

/** False if `p` may not see the object; else sets the private cache header when only some may. */
export async function setObjectCacheControl(v: Visibility, p: Principal, d: Digest, res: http.ServerResponse): Promise<boolean> {
  const a = (await v.objects(p, [d])).get(d);
  if (a === 'private') res.setHeader('cache-control', PRIVATE_OBJECT_CACHE_CONTROL);
  return a !== undefined;
}

/**
 * GET /v1/access: `{"private": bool}`, whether any image is private (an edge
 * with none to worry about skips the per-object question). POST /v1/access
 * with `{"digests": [...]}`: `{"objects": {DIGEST: "public" | "private"}}`
 * for those the asking token may fetch; the rest are absent to it.
 */
export async function accessAnswer(req: http.IncomingMessage, res: http.ServerResponse, v: Visibility, p: Principal): Promise<void> {
  if (req.method === 'GET' || req.method === 'HEAD') return sendJson(res, 200, { private: await v.anyPrivate() });
  if (req.method !== 'POST') throw new VmdnError('E_USAGE', `${req.method} not allowed on /v1/access`);
  const body = await readJson<{ digests?: unknown }>(req, 16 << 20);
  if (!isDigestList(body.digests)) throw new VmdnError('E_USAGE', 'body must be {"digests": [up to 100000 digests]}');
  const objects = Object.fromEntries(await v.objects(p, body.digests));
  return sendJson(res, 200, { objects });
}
