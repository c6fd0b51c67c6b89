/**
 * Who is asking (issue 16): `authenticate(req)` turns a request's
 * `Authorization: Bearer ...` into a Principal, and the scope checks say what
 * that principal may read and write. The single shared token of `vmdn serve
 * --token-file` is an admin token; tokens made by `vmdn token create` carry
 * their own scopes (tokens.ts). A request without a token is ANONYMOUS; one
 * with a token that is not valid (unknown, revoked, expired) is refused (401),
 * so a client learns its token went bad rather than silently seeing less.
 *
 * Scopes are name prefixes: `team/` covers `team/web` and `team/db`; `*`
 * covers every name. Tags do not matter: a scope is on a name's every tag.
 */
import type http from 'node:http';
import { VmdnError } from '../../errors.js';
import { tokenMatches } from '../wire/http-api.js';
import type { TokenStore } from './tokens.js';

export interface Principal {
  /** 'anonymous', 'admin' (the serve token) or the token's id. */
  id: string;
  anonymous: boolean;
  admin: boolean;
  read: readonly string[];
  write: readonly string[];
}

export const ANONYMOUS: Principal = Object.freeze({ id: 'anonymous', anonymous: true, admin: false, read: [], write: [] });
const ADMIN: Principal = Object.freeze({ id: 'admin', anonymous: false, admin: true, read: ['*'], write: ['*'] });

const covers = (prefixes: readonly string[], name: string) => prefixes.some((p) => p === '*' || name.startsWith(p));

/** May `p` see a private image of this name? (A public one anyone may.) */
export const canRead = (p: Principal, name: string): boolean => p.admin || covers(p.read, name) || covers(p.write, name);
/** May `p` point this name at a manifest? */
export const canWrite = (p: Principal, name: string): boolean => p.admin || covers(p.write, name);
/** May `p` upload objects at all (they are named, and so checked, only by a later PUT of a name)? */
export const canUpload = (p: Principal): boolean => p.admin || p.write.length > 0;

export function requireWrite(p: Principal, name: string): void {
  if (p.anonymous) throw new VmdnError('E_AUTH', 'uploads need a token with write scope (--token-file FILE)');
  if (!canWrite(p, name)) throw new VmdnError('E_FORBIDDEN', `token ${p.id} may not write ${name} (write scope: ${p.write.join(', ') || 'none'})`, { name });
}

export function requireUpload(p: Principal): void {
  if (p.anonymous) throw new VmdnError('E_AUTH', 'uploads need a token with write scope (--token-file FILE; the origin: vmdn serve --token-file, or vmdn token create)');
  if (!canUpload(p)) throw new VmdnError('E_FORBIDDEN', `token ${p.id} has no write scope`);
}

export interface AuthOptions {
  /** The shared token of `vmdn serve --token-file`: an admin. */
  adminToken?: string;
  tokens?: TokenStore;
}

export class Authenticator {
  constructor(private readonly o: AuthOptions) {}

  /** True when some token can be accepted at all (else the origin is read-only and anonymous). */
  get enabled(): boolean {
    return !!(this.o.adminToken || this.o.tokens);
  }

  async authenticate(req: http.IncomingMessage): Promise<Principal> {
    const h = req.headers.authorization;
    // an origin that accepts no token at all serves everyone alike, whatever header a client sends
    if (h === undefined || !this.enabled) return ANONYMOUS;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    if (!m) throw new VmdnError('E_AUTH', 'the Authorization header must be "Bearer TOKEN"');
    if (this.o.adminToken && tokenMatches(h, this.o.adminToken)) return ADMIN;
    if (this.o.tokens && m[1]!.startsWith('vmdn_')) {
      const v = this.o.tokens.cached(m[1]!) ?? (await this.o.tokens.verify(m[1]!));
      return { id: v.id, anonymous: false, admin: v.admin, read: v.read, write: v.write };
    }
    throw new VmdnError('E_AUTH', 'missing or invalid bearer token');
  }
}
