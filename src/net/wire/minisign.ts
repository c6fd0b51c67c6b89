/**
 * The minisign formats (https://jedisct1.github.io/minisign/), so that
 * anyone can check what a vmdn origin signs with the `minisign` tool:
 *
 *   public key   untrusted comment: ...\n base64("Ed" | key id (8) | ed25519 key (32))
 *   signature    untrusted comment: ...\n base64("ED" | key id (8) | ed25519(BLAKE2b-512(message)) (64))
 *                trusted comment: TEXT\n base64(ed25519(signature (64) | TEXT))
 *
 * Signatures are made "ED" (pre-hashed, minisign's default since 0.10, which
 * `minisign -V` accepts); "Ed" (the message itself signed) is verified too.
 * The secret key file is vmdn's own (docs/http-api.md, Signed image records):
 * minisign's is scrypt-encrypted and checksummed with BLAKE2b-256, which
 * node:crypto lacks.
 */
import crypto from 'node:crypto';
import { VmdnError } from '../../errors.js';

export interface PublicKey {
  /** 8 bytes, as in the key file. */
  id: Buffer;
  key: crypto.KeyObject;
}

export interface SecretKey extends PublicKey {
  secret: crypto.KeyObject;
  /** The 32 raw bytes of the public key. */
  raw: Buffer;
}

/** Comment lines are bounded like minisign's (1024 bytes); a signature file is four short lines. */
const MAX_COMMENT = 1024;
const MAX_SIGNATURE_TEXT = 4096;
const SECRET_FORMAT = 'vmdn-signing-key';

/** A key id as minisign prints it: the 8 bytes read as a little-endian number, in upper-case hex. */
export const keyIdHex = (id: Buffer): string => Buffer.from(id).reverse().toString('hex').toUpperCase();

const untrusted = (reason: string, message: string, data: Record<string, unknown> = {}) => new VmdnError('E_UNTRUSTED', message, { reason, ...data });

function rawPublic(key: crypto.KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url');
}

function publicFromRaw(raw: Buffer): crypto.KeyObject {
  return crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
}

/** A new key pair with a random key id. */
export function generateKey(): SecretKey {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  return { id: crypto.randomBytes(8), key: publicKey, secret: privateKey, raw: rawPublic(publicKey) };
}

/** The public key file, as `minisign -G` writes it. */
export function encodePublicKey(k: PublicKey): string {
  const body = Buffer.concat([Buffer.from('Ed'), k.id, rawPublic(k.key)]);
  return `untrusted comment: minisign public key ${keyIdHex(k.id)}\n${body.toString('base64')}\n`;
}

/** Canonical base64 of exactly `len` bytes (Buffer.from would skip junk and ignore padding bits silently). */
function base64Of(line: string, len: number): Buffer | undefined {
  if (line.length !== Math.ceil(len / 3) * 4) return undefined;
  const b = Buffer.from(line, 'base64');
  return b.length === len && b.toString('base64') === line ? b : undefined;
}

/** Parse a minisign public key file (or its base64 line alone, as `minisign -P` takes it). */
export function parsePublicKey(text: string, what = 'public key'): PublicKey {
  const bad = (why: string) => new VmdnError('E_USAGE', `${what} is not a minisign public key: ${why}`);
  if (text.length > 2 * MAX_COMMENT) throw bad('too long');
  const lines = text.split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l !== '');
  if (lines[0]?.startsWith('untrusted comment:')) lines.shift();
  if (lines.length !== 1) throw bad('expected one base64 line after the comment');
  const b = base64Of(lines[0]!, 42);
  if (!b || b.toString('latin1', 0, 2) !== 'Ed') throw bad('not base64 of "Ed", a key id and an ed25519 key (42 bytes)');
  return { id: b.subarray(2, 10), key: publicFromRaw(b.subarray(10)) };
}

/** vmdn's secret key file: JSON with the key id and the ed25519 seed, to be kept private (mode 0600). */
export function encodeSecretKey(k: SecretKey): string {
  const seed = Buffer.from(k.secret.export({ format: 'jwk' }).d!, 'base64url');
  return `${JSON.stringify({ format: SECRET_FORMAT, version: 1, keyId: keyIdHex(k.id), id: k.id.toString('hex'), seed: seed.toString('base64') })}\n`;
}

export function parseSecretKey(text: string, what = 'signing key'): SecretKey {
  const bad = (why: string) => new VmdnError('E_USAGE', `${what} is not a vmdn signing key (vmdn key generate): ${why}`);
  let j: Record<string, unknown>;
  try {
    if (text.length > 4096) throw new Error('too long');
    j = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw bad('not JSON');
  }
  if (j?.format !== SECRET_FORMAT || j.version !== 1) throw bad(`format must be "${SECRET_FORMAT}" version 1`);
  const id = typeof j.id === 'string' && /^[0-9a-f]{16}$/.test(j.id) ? Buffer.from(j.id, 'hex') : undefined;
  const seed = typeof j.seed === 'string' ? base64Of(j.seed, 32) : undefined;
  if (!id || !seed) throw bad('id must be 16 hex digits, seed base64 of 32 bytes');
  const secret = crypto.createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: 'der', type: 'pkcs8' });
  const key = crypto.createPublicKey(secret);
  return { id, key, secret, raw: rawPublic(key) };
}

/** The DER of an ed25519 PKCS#8 private key up to its 32-byte seed (RFC 8410). */
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

const prehash = (message: Uint8Array) => crypto.createHash('blake2b512').update(message).digest();

/** A minisign signature file for `message` ("ED": pre-hashed). The trusted comment is one line, signed too. */
export function sign(message: Uint8Array, k: SecretKey, trustedComment: string, untrustedComment = 'signature from vmdn secret key'): string {
  if (/[\r\n]/.test(trustedComment + untrustedComment) || trustedComment.length > MAX_COMMENT) throw new VmdnError('E_INTERNAL', 'comments must be single short lines');
  const sig = crypto.sign(null, prehash(message), k.secret);
  const global = crypto.sign(null, Buffer.concat([sig, Buffer.from(trustedComment, 'utf8')]), k.secret);
  return `untrusted comment: ${untrustedComment}\n${Buffer.concat([Buffer.from('ED'), k.id, sig]).toString('base64')}\ntrusted comment: ${trustedComment}\n${global.toString('base64')}\n`;
}

export interface Verified {
  key: PublicKey;
  trustedComment: string;
}

/**
 * Check a minisign signature of `message` by one of `keys`; returns the key
 * and the trusted comment. Throws E_UNTRUSTED with data.reason "malformed",
 * "unknown-key" or "bad-signature".
 */
export function verify(message: Uint8Array, signature: string, keys: readonly PublicKey[]): Verified {
  const malformed = (why: string) => untrusted('malformed', `not a minisign signature: ${why}`);
  if (signature.length > MAX_SIGNATURE_TEXT) throw malformed('too long');
  const lines = signature.replace(/\n$/, '').split('\n').map((l) => l.replace(/\r$/, ''));
  if (lines.length !== 4) throw malformed(`${lines.length} lines, not 4`);
  if (!lines[0]!.startsWith('untrusted comment:') || !lines[2]!.startsWith('trusted comment: ')) throw malformed('comment lines missing');
  const head = base64Of(lines[1]!, 74);
  const global = base64Of(lines[3]!, 64);
  if (!head || !global) throw malformed('bad base64 lines');
  const alg = head.toString('latin1', 0, 2);
  if (alg !== 'ED' && alg !== 'Ed') throw malformed(`unknown algorithm "${alg}"`);
  const id = head.subarray(2, 10);
  const key = keys.find((k) => k.id.equals(id));
  if (!key) throw untrusted('unknown-key', `signed by key ${keyIdHex(id)}, which is not trusted`, { keyId: keyIdHex(id) });
  const sig = head.subarray(10);
  const trustedComment = lines[2]!.slice('trusted comment: '.length);
  const ok = crypto.verify(null, alg === 'ED' ? prehash(message) : message, key.key, sig)
    && crypto.verify(null, Buffer.concat([sig, Buffer.from(trustedComment, 'utf8')]), key.key, global);
  if (!ok) throw untrusted('bad-signature', `signature by key ${keyIdHex(id)} does not match`, { keyId: keyIdHex(id) });
  return { key, trustedComment };
}
