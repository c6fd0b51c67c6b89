/**
 * A Debian archive's Release file (the payload of InRelease, after gpgv has
 * verified it): which suite it describes, until when it may be trusted, and
 * the SHA-256 and size of every index below dists/SUITE/. Parsed with bounds:
 * it comes from the network, and only its signature makes it trustworthy, so
 * the parser must survive anything before that is known (it is fuzzed).
 */
import { VmdnError } from '../errors.js';

export interface ReleaseEntry {
  sha256: string;
  size: number;
}

export interface Release {
  suite?: string;
  codename?: string;
  date?: Date;
  validUntil?: Date;
  /** Path below dists/SUITE/ (e.g. main/binary-amd64/Packages.xz) -> its SHA-256 and size. */
  sha256: Map<string, ReleaseEntry>;
}

/** Debian's Release files are ~100 KiB-1 MiB with a few thousand entries; these bounds are far above. */
export const MAX_RELEASE_BYTES = 32 << 20;
const MAX_LINE = 16 << 10;
const MAX_ENTRIES = 200_000;
/** An index larger than this is not a Packages file vmdn will read. */
const MAX_INDEX_SIZE = 2 ** 40;

const bad = (msg: string, data: Record<string, unknown> = {}) => new VmdnError('E_UNTRUSTED', `Release file: ${msg}`, data);

/** RFC 2822 dates as Release files write them ("Sat, 10 Jun 2023 08:51:22 UTC"). */
function date(field: string, v: string): Date {
  if (!/^[\w ,:+-]{10,64}$/.test(v)) throw bad(`${field} is not a date: ${JSON.stringify(v.slice(0, 80))}`);
  const d = new Date(v.replace(/\bUTC$/, 'GMT'));
  if (Number.isNaN(d.getTime())) throw bad(`${field} is not a date: ${JSON.stringify(v)}`);
  return d;
}

export function parseRelease(text: string): Release {
  if (text.length > MAX_RELEASE_BYTES) throw bad(`longer than ${MAX_RELEASE_BYTES} bytes`);
  const rel: Release = { sha256: new Map() };
  const seen = new Set<string>();
  let field = '';
  let lineNo = 0;
  for (const raw of text.split('\n')) {
    lineNo++;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.length > MAX_LINE) throw bad(`line ${lineNo} is longer than ${MAX_LINE} bytes`);
    if (line === '') {
      // one stanza only: what follows a blank line is not part of this Release
      if (seen.size) break;
      continue;
    }
    if (line[0] === ' ' || line[0] === '\t') {
      if (!field) throw bad(`line ${lineNo} continues no field`);
      if (field !== 'sha256') continue;
      const m = /^\s+([0-9a-fA-F]{64})\s+(\d{1,15})\s+(\S{1,1024})$/.exec(line);
      if (!m) throw bad(`SHA256 line ${lineNo} is not "hash size path"`);
      const size = Number(m[2]);
      const p = m[3]!;
      if (size > MAX_INDEX_SIZE) throw bad(`${p} claims ${size} bytes`);
      if (p.startsWith('/') || p.split('/').includes('..')) throw bad(`${JSON.stringify(p)} is outside the suite`);
      if (rel.sha256.has(p)) throw bad(`${p} is listed twice`);
      if (rel.sha256.size >= MAX_ENTRIES) throw bad(`more than ${MAX_ENTRIES} SHA256 entries`);
      rel.sha256.set(p, { sha256: m[1]!.toLowerCase(), size });
      continue;
    }
    const c = line.indexOf(':');
    if (c <= 0 || !/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(line.slice(0, c))) throw bad(`line ${lineNo} is not "Field: value"`);
    field = line.slice(0, c).toLowerCase();
    if (seen.has(field)) throw bad(`field ${line.slice(0, c)} appears twice`);
    seen.add(field);
    const v = line.slice(c + 1).trim();
    if (field === 'suite') rel.suite = v;
    else if (field === 'codename') rel.codename = v;
    else if (field === 'date') rel.date = date('Date', v);
    else if (field === 'valid-until') rel.validUntil = date('Valid-Until', v);
    else if (field === 'sha256' && v !== '') throw bad('SHA256 has a value on its own line');
  }
  return rel;
}

/**
 * Whether this Release may be used for `suite` at `now`: it must name the
 * suite (by Suite or Codename: a signed Release of another suite, replayed,
 * is refused) and, if it has a Valid-Until, not be past it. A Release with no
 * Valid-Until (Debian's main suites have none) does not expire: the signature
 * alone vouches for it, as apt does by default.
 */
export function checkRelease(rel: Release, suite: string, now: Date, where: string): void {
  const names = [rel.suite, rel.codename].filter((x): x is string => !!x);
  // old-style "buster/updates" suites name their release by the first part
  if (!names.includes(suite) && !names.includes(suite.split('/')[0]!)) {
    throw new VmdnError('E_UNTRUSTED', `${where}: the signed Release is for ${names.join('/') || 'no suite'}, not ${suite}`, { suite, release: names });
  }
  if (rel.validUntil && rel.validUntil.getTime() < now.getTime()) {
    throw new VmdnError('E_UNTRUSTED', `${where}: the signed Release expired on ${rel.validUntil.toISOString()} (Valid-Until): the mirror serves stale metadata`, { suite, validUntil: rel.validUntil.toISOString() });
  }
}
