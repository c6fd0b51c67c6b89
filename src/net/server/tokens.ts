/**
 * Access tokens of an origin (issue 16): `vmdn_<id>_<secret>`. The store keeps
 * only a scrypt hash of the secret (with its salt and parameters), never the
 * token itself; the id finds the record without trying every hash.
 *
 * scrypt costs tens of milliseconds on purpose, far more than serving an
 * object, so a verified token is remembered in memory (keyed by a SHA-256 of
 * the whole token, which is only as guessable as the token) for VERIFIED_TTL_MS.
 * The token list itself is re-read from the store at most every LIST_TTL_MS:
 * a revoke in this process takes effect at once (the caches are dropped); one
 * made by another process (`vmdn token revoke` beside a running `vmdn serve`)
 * within LIST_TTL_MS.
 *
 * The records live in the store's side records (kind `access`, key `tokens`),
 * one JSON document rewritten atomically by temp file and rename.
 */
import { durationMs } from '../../util/duration.js';
import { hash, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { VmdnError } from '../../errors.js';
import type { SideRecords } from '../../store/types.js';

export const RECORD_KIND = 'access';
const TOKENS_KEY = 'tokens';
/** How long a token list read from the store is trusted: the longest a revoke by another process waits. */
export const LIST_TTL_MS = 2000;
/** How long a verified token skips scrypt. */
export const VERIFIED_TTL_MS = 60_000;
/** scrypt cost: N=2^14, r=8, p=1 (16 MiB, ~50 ms): RFC 7914's interactive-login figures. */
const SCRYPT = { N: 16384, r: 8, p: 1, keylen: 32 } as const;
const TOKEN_RE = /^vmdn_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface Scopes {
  /** Name prefixes the holder may read (private images) ; '*' is every name. */
  read: string[];
  /** Name prefixes the holder may push to; '*' is every name. */
  write: string[];
  admin: boolean;
}

export interface TokenRecord extends Scopes {
  id: string;
  /** scrypt(secret, salt) in hex, with the parameters it was made with. */
  hash: string;
  salt: string;
  params: { N: number; r: number; p: number };
  created: string;
  /** ISO time after which the token is refused; null: never. */
  expires: string | null;
  revoked: string | null;
  note?: string;
}

/** A record as `token list` shows it: no hash, no salt. */
export type TokenInfo = Omit<TokenRecord, 'hash' | 'salt' | 'params'>;

export interface Verified extends Scopes {
  id: string;
  expires: number;
}

const hashSecret = (secret: string, salt: Buffer, p: { N: number; r: number; p: number }) =>
  scryptSync(secret, salt, SCRYPT.keylen, { N: p.N, r: p.r, p: p.p, maxmem: 64 << 20 });

export class TokenStore {
  private list: { at: number; records: Map<string, TokenRecord> } | undefined;
  private readonly verified = new Map<string, { at: number; v: Verified }>();

  constructor(private readonly records: SideRecords, private readonly now = () => Date.now()) {}

  async load(): Promise<Map<string, TokenRecord>> {
    const now = this.now();
    if (this.list && now - this.list.at < LIST_TTL_MS) return this.list.records;
    const raw = await this.records.getRecord(RECORD_KIND, TOKENS_KEY);
    let arr: TokenRecord[] = [];
    if (raw) {
      try {
        arr = (JSON.parse(Buffer.from(raw).toString('utf8')) as { tokens: TokenRecord[] }).tokens;
        if (!Array.isArray(arr)) throw new Error('no token array');
        arr.forEach(checkRecord);
      } catch (err) {
        throw new VmdnError('E_STORE', `token records are damaged: ${(err as Error).message}`);
      }
    }
    const records = new Map(arr.map((r) => [r.id, r]));
    // a token revoked or changed elsewhere must not outlive the list it was verified against
    if (this.list) for (const [k, e] of this.verified) if (!same(records.get(e.v.id), this.list.records.get(e.v.id))) this.verified.delete(k);
    this.list = { at: now, records };
    return records;
  }

  private async save(records: Map<string, TokenRecord>): Promise<void> {
    await this.records.putRecord(RECORD_KIND, TOKENS_KEY, Buffer.from(JSON.stringify({ tokens: [...records.values()] }, null, 1)));
    this.list = undefined;
    this.verified.clear();
  }

  /** A new token; the returned string is the only copy of its secret. */
  async create(scopes: Scopes, o: { expires?: Date; note?: string } = {}): Promise<{ token: string; record: TokenInfo }> {
    for (const p of [...scopes.read, ...scopes.write]) if (!p) throw new VmdnError('E_USAGE', 'an empty scope prefix: use \'*\' for every name');
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const salt = randomBytes(16);
    const params = { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p };
    const rec: TokenRecord = {
      id, ...scopes, hash: hashSecret(secret, salt, params).toString('hex'), salt: salt.toString('hex'), params,
      created: new Date(this.now()).toISOString(), expires: o.expires ? o.expires.toISOString() : null, revoked: null, ...(o.note ? { note: o.note } : {}),
    };
    this.list = undefined;
    const records = new Map(await this.load());
    records.set(id, rec);
    await this.save(records);
    return { token: `vmdn_${id}_${secret}`, record: info(rec) };
  }

  async listTokens(): Promise<TokenInfo[]> {
    this.list = undefined;
    return [...(await this.load()).values()].map(info);
  }

  async revoke(id: string): Promise<TokenInfo> {
    this.list = undefined;
    const records = new Map(await this.load());
    const rec = records.get(id);
    if (!rec) throw new VmdnError('E_NOT_FOUND', `no token ${id}`, { id });
    records.set(id, { ...rec, revoked: rec.revoked ?? new Date(this.now()).toISOString() });
    await this.save(records);
    return info(records.get(id)!);
  }

  /**
   * The scopes of a token verified within VERIFIED_TTL_MS, synchronously (no
   * promise: this is on every request's path), while the token list is fresh.
   */
  cached(token: string): Verified | undefined {
    const now = this.now();
    if (!this.list || now - this.list.at >= LIST_TTL_MS) return undefined;
    const hit = this.verified.get(hash('sha256', token, 'base64'));
    return hit && now - hit.at < VERIFIED_TTL_MS && now < hit.v.expires ? hit.v : undefined;
  }

  /** The scopes of a valid token; E_AUTH for a malformed, unknown, wrong, revoked or expired one. */
  async verify(token: string): Promise<Verified> {
    const fast = this.cached(token);
    if (fast) return fast;
    const now = this.now();
    const key = hash('sha256', token, 'base64');
    const records = await this.load();
    const hit = this.verified.get(key);
    if (hit && now - hit.at < VERIFIED_TTL_MS && now < hit.v.expires) return hit.v;
    if (hit) this.verified.delete(key);
    const m = TOKEN_RE.exec(token);
    const rec = m ? records.get(m[1]!) : undefined;
    if (!m || !rec) throw new VmdnError('E_AUTH', 'unknown token');
    const want = Buffer.from(rec.hash, 'hex');
    const got = hashSecret(m[2]!, Buffer.from(rec.salt, 'hex'), rec.params);
    if (want.length !== got.length || !timingSafeEqual(want, got)) throw new VmdnError('E_AUTH', 'unknown token');
    if (rec.revoked) throw new VmdnError('E_AUTH', `token ${rec.id} was revoked`, { id: rec.id });
    const expires = rec.expires ? Date.parse(rec.expires) : Infinity;
    if (!(now < expires)) throw new VmdnError('E_AUTH', `token ${rec.id} expired at ${rec.expires}`, { id: rec.id });
    const v: Verified = { id: rec.id, read: rec.read, write: rec.write, admin: rec.admin, expires };
    this.verified.set(key, { at: now, v });
    return v;
  }
}

const isPrefixes = (a: unknown) => Array.isArray(a) && a.length <= 1000 && a.every((p) => typeof p === 'string' && p.length > 0 && p.length <= 1024);
const isTime = (t: unknown) => t === null || (typeof t === 'string' && !Number.isNaN(Date.parse(t)));

/** Every field of a stored record, bounded: a damaged or hostile file cannot make scrypt take unbounded memory or time. */
function checkRecord(r: TokenRecord, i: number): void {
  const p = r?.params;
  const ok = typeof r === 'object' && r !== null && /^[0-9a-f]{16}$/.test(r.id) && /^[0-9a-f]{64}$/.test(r.hash) && /^[0-9a-f]{32}$/.test(r.salt)
    && isPrefixes(r.read) && isPrefixes(r.write) && typeof r.admin === 'boolean' && isTime(r.created) && isTime(r.expires) && isTime(r.revoked)
    && typeof p === 'object' && p !== null && [p.N, p.r, p.p].every(Number.isInteger) && p.N >= 2 && p.N <= 1 << 20 && (p.N & (p.N - 1)) === 0
    && p.r >= 1 && p.r <= 32 && p.p >= 1 && p.p <= 16 && 128 * p.N * p.r <= 32 << 20 && (r.note === undefined || typeof r.note === 'string');
  if (!ok) throw new Error(`record ${i} is not a valid token record`);
}

function info(r: TokenRecord): TokenInfo {
  const { hash: _h, salt: _s, params: _p, ...rest } = r;
  return rest;
}

const same = (a: TokenRecord | undefined, b: TokenRecord | undefined) => !!a && !!b && a.revoked === b.revoked && a.expires === b.expires && a.hash === b.hash;

/** `--expires 30d`, `12h`, `90m` or an ISO date. */
export function parseExpiry(s: string, now = Date.now()): Date {
  const ms = /^\d+[dhm]$/.test(s) ? durationMs(s) : undefined;
  if (ms !== undefined) return new Date(now + ms);
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new VmdnError('E_USAGE', `--expires takes 30d, 12h, 90m or an ISO date, not "${s}"`);
  return new Date(t);
}
