import crypto, { createHash } from 'node:crypto';
import { VmdnError } from '../errors.js';

/** Object address: SHA-256 of the uncompressed bytes, 64 lowercase hex digits. */
export type Digest = string;

const DIGEST_RE = /^[0-9a-f]{64}$/;

// one-shot crypto.hash (Node >= 20.12) skips a Hash object per call: objects are hashed by the ten thousand
const oneShot = typeof crypto.hash === 'function' ? crypto.hash : undefined;

export function sha256(data: Uint8Array): Digest {
  if (oneShot) return oneShot('sha256', data, 'hex');
  return createHash('sha256').update(data).digest('hex');
}

export function isDigest(s: unknown): s is Digest {
  return typeof s === 'string' && DIGEST_RE.test(s);
}

export function assertDigest(s: unknown, what = 'digest'): Digest {
  if (!isDigest(s)) throw new VmdnError('E_USAGE', `invalid ${what}: expected 64 lowercase hex digits`, { value: String(s).slice(0, 80) });
  return s;
}
