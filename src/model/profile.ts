/**
 * A boot profile (docs/format.md): the objects of one image in the order a
 * client first read them, each once, with the milliseconds since the
 * recording started. Stored as an object of its own (immutable, addressed
 * by its hash) and tied to its manifest by a pointer the store keeps; a
 * lazy `vmdn nbd --from` prefetches in its order. A profile is only a hint:
 * a reader that refuses one falls back to disk order, so the checks below
 * refuse anything odd rather than repair it.
 */
import { isDigest, type Digest } from '../store/digest.js';
import { VmdnError } from '../errors.js';

export const PROFILE_KIND = 'vmdn.boot-profile';
export const PROFILE_VERSION = 1;
/** As many reads as a manifest may have chunks. */
export const MAX_PROFILE_READS = 2 ** 26;
/** About 11 days: a recording longer than that is not a boot. */
export const MAX_PROFILE_MS = 2 ** 30;

export interface BootProfile {
  kind: typeof PROFILE_KIND;
  version: typeof PROFILE_VERSION;
  /** The image this profile was recorded on. */
  manifest: Digest;
  /** [ms since the recording started, object digest], in first-read order; each digest once. */
  reads: Array<[number, Digest]>;
}

export function encodeProfile(p: BootProfile): Uint8Array {
  validateProfile(p, 'caller');
  return new TextEncoder().encode(JSON.stringify({ kind: p.kind, version: p.version, manifest: p.manifest, reads: p.reads }));
}

/**
 * Parse and check a profile. With `expect`, also that it was recorded on
 * that manifest and names only objects of it (`chunks`): a profile for
 * another image, or one that would have the fill fetch foreign objects, is
 * refused (E_MANIFEST).
 */
export function decodeProfile(bytes: Uint8Array, source: string, expect?: { manifest: Digest; chunks: ReadonlySet<Digest> }): BootProfile {
  let p: unknown;
  try {
    p = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new VmdnError('E_MANIFEST', `boot profile from ${source} is not valid JSON`, { source }, { cause: err });
  }
  validateProfile(p as BootProfile, source);
  const profile = p as BootProfile;
  if (expect) {
    if (profile.manifest !== expect.manifest) bad(`recorded on manifest ${profile.manifest.slice(0, 12)}, not ${expect.manifest.slice(0, 12)}`, source);
    if (profile.reads.length > expect.chunks.size) bad(`${profile.reads.length} reads for an image of ${expect.chunks.size} objects`, source);
    const foreign = profile.reads.find(([, d]) => !expect.chunks.has(d));
    if (foreign) bad(`object ${foreign[1].slice(0, 12)} is not in the image`, source);
  }
  return profile;
}

function bad(msg: string, source: string): never {
  throw new VmdnError('E_MANIFEST', `boot profile from ${source}: ${msg}`, { source });
}

export function validateProfile(p: BootProfile, source: string): void {
  if (!p || typeof p !== 'object' || Array.isArray(p)) bad('not an object', source);
  if (p.kind !== PROFILE_KIND) bad(`kind is ${JSON.stringify(p.kind)?.slice(0, 40)}, expected ${PROFILE_KIND}`, source);
  if (p.version !== PROFILE_VERSION) bad(`version ${String(p.version).slice(0, 20)} not supported (this vmdn reads ${PROFILE_VERSION})`, source);
  if (!isDigest(p.manifest)) bad('bad manifest digest', source);
  if (!Array.isArray(p.reads) || p.reads.length > MAX_PROFILE_READS) bad('bad read list', source);
  const seen = new Set<Digest>();
  let last = 0;
  for (let i = 0; i < p.reads.length; i++) {
    const r = p.reads[i];
    if (!Array.isArray(r) || r.length !== 2) bad(`read ${i} is not [ms, digest]`, source);
    const [ms, d] = r as [unknown, unknown];
    if (typeof ms !== 'number' || !Number.isSafeInteger(ms) || ms < last || ms > MAX_PROFILE_MS) bad(`read ${i}: time out of order or range`, source);
    if (!isDigest(d)) bad(`read ${i}: bad digest`, source);
    if (seen.has(d)) bad(`read ${i}: object ${d.slice(0, 12)} listed twice`, source);
    seen.add(d);
    last = ms;
  }
}
