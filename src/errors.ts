/**
 * Typed errors with a stable `code`. Every failure the user can cause maps to
 * one of these; the CLI maps codes to exit statuses and (later) the HTTP layer
 * to status codes, both from the single table below.
 */
export const ERROR_CODES = {
  // input images
  E_FORMAT: { exit: 3, http: 422, summary: 'invalid or corrupt image' },
  E_UNSUPPORTED: { exit: 3, http: 422, summary: 'unsupported image feature' },
  E_TRUNCATED: { exit: 3, http: 422, summary: 'image file is truncated' },
  E_BACKING: { exit: 3, http: 422, summary: 'bad backing file chain' },
  // store
  E_NOT_FOUND: { exit: 4, http: 404, summary: 'not found' },
  E_CORRUPT_OBJECT: { exit: 5, http: 502, summary: 'object failed hash verification' },
  E_STORE: { exit: 5, http: 500, summary: 'store error' },
  E_MANIFEST: { exit: 5, http: 500, summary: 'invalid manifest' },
  // usage
  E_USAGE: { exit: 2, http: 400, summary: 'invalid arguments' },
  E_IO: { exit: 6, http: 500, summary: 'I/O error' },
  E_ABORTED: { exit: 130, http: 499, summary: 'operation aborted' },
  E_TIMEOUT: { exit: 9, http: 504, summary: 'timed out' },
  E_INTERNAL: { exit: 70, http: 500, summary: 'internal error' },
  // network delivery
  E_AUTH: { exit: 7, http: 401, summary: 'missing or invalid token' },
  E_FORBIDDEN: { exit: 7, http: 403, summary: 'the token lacks the scope for this' },
  E_UNREACHABLE: { exit: 8, http: 502, summary: 'upstream unreachable' },
  E_INCOMPLETE: { exit: 4, http: 409, summary: 'referenced objects are missing' },
  // signed image records (docs/http-api.md): unsigned, another key's, expired or older than one seen;
  // and Debian archives whose InRelease signature, Release or index does not check out
  E_UNTRUSTED: { exit: 11, http: 502, summary: 'signature or signed index check failed' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class VmdnError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, data: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VmdnError';
    this.code = code;
    this.data = data;
  }
  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }
  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }
  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...this.data };
  }
}

/** errno codes and SQLite codes that mean "the disk (or the quota) is full": an I/O condition, not a damaged store. */
const FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

/** True if `err` or anything in its cause chain (or, for codec worker errors, its data) says the disk is full. */
function diskFull(err: unknown): string | undefined {
  for (let e = err as (NodeJS.ErrnoException & { data?: Record<string, unknown> }) | undefined, depth = 0; e && depth < 8; e = e.cause as typeof e, depth++) {
    for (const c of [e.code, e.data?.errno, e.data?.code]) if (typeof c === 'string' && FULL_CODES.has(c)) return c;
    if (typeof e.message === 'string' && /database or disk is full|no space left on device|disk quota exceeded/i.test(e.message)) return 'ENOSPC';
    if (typeof e !== 'object') break;
  }
  return undefined;
}

/**
 * Normalise anything thrown into a VmdnError (unknown failures become E_INTERNAL / E_IO).
 * A full disk is E_IO wherever it surfaced (an object write, the SQLite index, a codec
 * worker): the store is not damaged, the user has to free space.
 */
export function asVmdnError(err: unknown): VmdnError {
  const full = diskFull(err);
  if (full && !(err instanceof VmdnError && err.code === 'E_IO')) {
    const msg = (err as Error)?.message ?? String(err);
    const data = err instanceof VmdnError ? err.data : {};
    return new VmdnError('E_IO', /no space|disk is full|quota/i.test(msg) ? msg : `disk full (${full}): ${msg}`, { ...data, errno: full }, { cause: err });
  }
  if (err instanceof VmdnError) return err;
  const e = err as NodeJS.ErrnoException;
  // the store index (better-sqlite3): a full disk or failing I/O is E_IO like any file's, the rest a store error
  if (e && typeof e.code === 'string' && e.code.startsWith('SQLITE_')) {
    const io = /^SQLITE_(FULL|IOERR|CANTOPEN|READONLY|PERM|NOMEM)/.test(e.code);
    return new VmdnError(io ? 'E_IO' : 'E_STORE', `store index: ${e.message}`, { sqlite: e.code }, { cause: err });
  }
  if (e && typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) {
    if (e.code === 'ENOENT') return new VmdnError('E_NOT_FOUND', e.message, { errno: e.code }, { cause: err });
    return new VmdnError('E_IO', e.message, { errno: e.code }, { cause: err });
  }
  if (e && e.name === 'AbortError') return new VmdnError('E_ABORTED', 'operation aborted', {}, { cause: err });
  return new VmdnError('E_INTERNAL', e?.message ?? String(err), {}, { cause: err });
}

/** Throw E_FORMAT unless `cond` holds; keeps parsers' bound checks one line each. */
export function check(cond: unknown, code: ErrorCode, message: string, data: Record<string, unknown> = {}): asserts cond {
  if (!cond) throw new VmdnError(code, message, data);
}
