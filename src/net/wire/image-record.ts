/**
 * Signed image records (docs/http-api.md): what an origin with a signing key
 * says a name stands for. The record is a one-line JSON document whose exact
 * bytes are signed (minisign, ./minisign.ts); it travels as a string inside
 * the name's JSON answer, so edges and HTTP caches pass it on unchanged, and
 * written to a file it checks with `minisign -V`.
 */
import { isDigest, type Digest } from '../../store/digest.js';
import { parseImageRef } from '../../store/image-name.js';
import { VmdnError } from '../../errors.js';
import { parseJson } from './http-api.js';

export const RECORD_VERSION = 1;
/** A record is a few hundred bytes; names are bounded well below this. */
export const MAX_RECORD = 4096;

export interface ImageRecordV1 {
  v: 1;
  name: string;
  tag: string;
  manifest: Digest;
  /** When the name was given this manifest (ISO 8601). */
  created: string;
  /** When this record was signed, and when it stops being valid. */
  signed: string;
  expires: string;
  /** Grows each time the origin signs a new manifest for this name:tag; never goes back. */
  seq: number;
}

/** What travels in `GET /v1/images/NAME/TAG` beside the unsigned fields. */
export interface SignedRecord {
  record: string;
  signature: string;
}

/** The record's bytes as signed: fixed key order, one line. */
export function encodeRecord(r: Omit<ImageRecordV1, 'v'>): string {
  const o: ImageRecordV1 = { v: 1, name: r.name, tag: r.tag, manifest: r.manifest, created: r.created, signed: r.signed, expires: r.expires, seq: r.seq };
  return JSON.stringify(o);
}

/** The trusted comment signed with it: what `minisign -V` prints. */
export const trustedComment = (r: ImageRecordV1): string => `vmdn image record ${r.name}:${r.tag} seq ${r.seq} manifest ${r.manifest} expires ${r.expires}`;

const isTime = (s: unknown): s is string => typeof s === 'string' && s.length <= 40 && /^\d{4}-\d\d-\d\dT/.test(s) && Number.isFinite(Date.parse(s));

/** Parse and check every field; E_UNTRUSTED (reason "malformed") for anything else. */
export function parseRecord(text: string): ImageRecordV1 {
  const bad = (why: string) => new VmdnError('E_UNTRUSTED', `malformed image record: ${why}`, { reason: 'malformed' });
  if (text.length > MAX_RECORD) throw bad(`longer than ${MAX_RECORD} bytes`);
  let r: Partial<ImageRecordV1> | null;
  try {
    r = parseJson(text) as Partial<ImageRecordV1> | null;
  } catch {
    throw bad('not JSON');
  }
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw bad('not an object');
  if (r.v !== RECORD_VERSION) throw bad(`version ${String(r.v)}, this vmdn reads ${RECORD_VERSION}`);
  if (typeof r.name !== 'string' || typeof r.tag !== 'string') throw bad('name and tag must be strings');
  try {
    parseImageRef(`${r.name}:${r.tag}`);
  } catch {
    throw bad('invalid name or tag');
  }
  if (!isDigest(r.manifest)) throw bad('manifest is not a digest');
  if (!isTime(r.created) || !isTime(r.signed) || !isTime(r.expires)) throw bad('created, signed and expires must be ISO 8601 times');
  if (!Number.isSafeInteger(r.seq) || r.seq! < 1) throw bad('seq must be a positive integer');
  return r as ImageRecordV1;
}
