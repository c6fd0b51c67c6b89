/**
 * Who may see or change what, in one place: every portal endpoint (and the
 * origin's /v1/images listing, through the hook serve wires in) asks here.
 * Today there is one upload token; per-user tokens (branch trust-tokens) plug
 * in by changing `authOf` and the two predicates, not the handlers.
 *
 * A hidden image is answered as absent (E_NOT_FOUND, not E_AUTH): a visitor
 * must not learn that an unpublished name exists.
 */
import type http from 'node:http';
import { tokenMatches } from '../net/wire/http-api.js';
import { VmdnError } from '../errors.js';

export interface Auth {
  /** A valid token came with the request. */
  authenticated: boolean;
  /** Who it belongs to (one shared token today: "token"). */
  user?: string;
}

export const ANONYMOUS: Auth = { authenticated: false };

export function authOf(req: http.IncomingMessage, token: string | undefined): Auth {
  return tokenMatches(req.headers.authorization, token) ? { authenticated: true, user: 'token' } : ANONYMOUS;
}

/** What visibility depends on: the image's portal metadata (undefined: named outside the portal, public like /v1/images). */
export interface Visibility {
  published: boolean;
}

export function canSee(meta: Visibility | undefined, auth: Auth): boolean {
  return auth.authenticated || meta === undefined || meta.published;
}

export function canWrite(_name: string, auth: Auth): boolean {
  return auth.authenticated;
}

export function requireWrite(name: string, auth: Auth): void {
  if (!canWrite(name, auth)) throw new VmdnError('E_AUTH', 'missing or invalid bearer token');
}

/** For the SQL side of the same rule: the catalog query shows unpublished rows only to this. */
export const seesUnpublished = (auth: Auth): boolean => auth.authenticated;
