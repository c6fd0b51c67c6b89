/**
 * Who may see or change what, in one place: every portal endpoint (and the
 * origin's /v1/images listing, through the hook serve wires in) asks here.
 * Who a request is comes from the origin's authenticator (net/server/auth.ts:
 * the serve token is an admin, `vmdn token create` tokens carry name-prefix
 * scopes); which names are private comes from the origin's visibility
 * (net/server/visibility.ts). The portal adds one rule of its own: an image
 * uploaded through it stays unpublished until its publisher says otherwise.
 *
 * A hidden image is answered as absent (E_NOT_FOUND, not E_AUTH): a visitor
 * must not learn that an unpublished or private name exists.
 */
import type http from 'node:http';
import { ANONYMOUS, canRead, requireUpload, requireWrite as requireNameWrite, type Principal } from '../net/server/auth.js';

/** Who is asking, and the private names that principal may not see (the catalog's SQL leaves them out). */
export interface Auth {
  principal: Principal;
  hidden: readonly string[];
}

/** What the portal needs from the origin it is mounted on (vmdn serve hands it in). */
export interface AccessSource {
  authenticate(req: http.IncomingMessage): Promise<Principal>;
  /** Private names this principal has no read scope on. */
  hiddenNames(p: Principal): Promise<string[]>;
}

export const ANONYMOUS_AUTH: Auth = { principal: ANONYMOUS, hidden: [] };

export async function authOf(req: http.IncomingMessage, source: AccessSource): Promise<Auth> {
  const principal = await source.authenticate(req);
  return { principal, hidden: await source.hiddenNames(principal) };
}

/** What visibility depends on: the image's portal metadata (undefined: named outside the portal, public like /v1/images). */
export interface Visibility {
  published: boolean;
}

export function canSee(name: string, meta: Visibility | undefined, auth: Auth): boolean {
  if (auth.hidden.includes(name)) return false;
  return meta === undefined || meta.published || canRead(auth.principal, name);
}

export function requireWrite(name: string, auth: Auth): void {
  requireNameWrite(auth.principal, name);
}

/** Upload jobs before they name an image: any write scope (the name is checked when the job is made). */
export function requireUploader(auth: Auth): void {
  requireUpload(auth.principal);
}

/** For the SQL side of the same rules: which rows a catalog query may return. */
export function visibleSql(auth: Auth, alias = 'i'): { sql: string; args: unknown[] } {
  // unpublished rows only to admins in lists (a scoped reader still opens its own by name)
  const parts = auth.principal.admin ? [] : [`${alias}.published = 1`];
  const args: unknown[] = [];
  if (auth.hidden.length) {
    parts.push(`${alias}.name NOT IN (SELECT value FROM json_each(?))`);
    args.push(JSON.stringify(auth.hidden));
  }
  return { sql: parts.length ? parts.join(' AND ') : '1', args };
}

/** Fixed viewers for code that searches the catalog outside a request (the bench, tests). */
export const ADMIN_AUTH: Auth = { principal: Object.freeze({ id: 'admin', anonymous: false, admin: true, read: ['*'], write: ['*'] }), hidden: [] };
