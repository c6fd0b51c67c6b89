/**
 * A Debian archive as a source of packages: where it is (the host's apt
 * configuration, `--apt-source`, or the image's own sources list), its
 * Packages indexes (each checked against the suite's signed InRelease,
 * archive-trust.ts), and each .deb fetched and checked against the SHA-256
 * and size the index gives. The mirror is never named in code: it always
 * comes from configuration.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { boundedLines } from '../util/lines.js';
import { VmdnError } from '../errors.js';
import { drained } from '../util/drain.js';
import { DEBIAN_KEYRING, archiveGet, archiveUrl, suiteRelease, verifiedIndex } from './archive-trust.js';
import type { Release } from './release.js';

export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
  /** Its `signed-by` keyring file, when the host's apt configuration names one (used unless `--keyring` is given). */
  keyring?: string;
}

export interface DebRecord {
  name: string;
  version: string;
  arch: string;
  /** Path below the archive root (pool/...). */
  filename: string;
  size: number;
  sha256: string;
  /** Archive root it was listed in. */
  uri: string;
}

export const debKey = (name: string, version: string, arch: string): string => `${name}\t${version}\t${arch}`;

/** One-line format: `deb [options] URI SUITE COMPONENT...` (deb-src and comments skipped). */
export function parseSourcesList(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const m = /^deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const keyring = /(?:^|\s)signed-by=(\/\S+)/.exec(m[1] ?? '')?.[1];
    out.push({ uri: m[2]!, suites: [m[3]!], components: m[4]!.split(/\s+/).filter(Boolean), ...(keyring ? { keyring } : {}) });
  }
  return out;
}

/** deb822 format (*.sources): stanzas with Types, URIs, Suites, Components. */
export function parseDeb822Sources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const f = new Map<string, string>();
    let last = '';
    for (const line of stanza.split('\n')) {
      if (line.startsWith('#')) continue;
      if (/^\s/.test(line) && last) f.set(last, `${f.get(last)} ${line.trim()}`);
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m) f.set((last = m[1]!.toLowerCase()), m[2]!.trim());
    }
    if (f.get('enabled')?.toLowerCase() === 'no') continue;
    if (!(f.get('types') ?? '').split(/\s+/).includes('deb')) continue;
    const words = (k: string) => (f.get(k) ?? '').split(/\s+/).filter(Boolean);
    // Signed-By may also hold a key block inline: only a file path is used
    const keyring = /^\/\S+$/.test(f.get('signed-by') ?? '') ? f.get('signed-by') : undefined;
    for (const uri of words('uris')) out.push({ uri, suites: words('suites'), components: words('components'), ...(keyring ? { keyring } : {}) });
  }
  return out;
}

/** The archives the host's apt is configured with (root `/` by default; a test may point elsewhere). */
export function hostAptSources(root = '/'): AptSource[] {
  const read = (p: string) => {
    try {
      return fs.readFileSync(path.join(root, p), 'utf8');
    } catch {
      return undefined;
    }
  };
  const out: AptSource[] = [];
  const list = read('etc/apt/sources.list');
  if (list) out.push(...parseSourcesList(list));
  let names: string[] = [];
  try {
    names = fs.readdirSync(path.join(root, 'etc/apt/sources.list.d')).sort();
  } catch {
    // no directory: only sources.list
  }
  for (const n of names) {
    const t = read(`etc/apt/sources.list.d/${n}`);
    if (!t) continue;
    if (n.endsWith('.sources')) out.push(...parseDeb822Sources(t));
    else if (n.endsWith('.list')) out.push(...parseSourcesList(t));
  }
  return out.filter((s) => /^https?:\/\//.test(s.uri));
}

/** `--apt-source URL`: an archive root, searched in the image's release suites and the usual components. */
export function sourceFromUrl(url: string, codename: string): AptSource {
  if (!/^https?:\/\/[^\s]+$/.test(url)) throw new VmdnError('E_USAGE', `--apt-source must be an http(s) URL of an archive root, not ${JSON.stringify(url)}`);
  return { uri: url, suites: [codename, `${codename}-updates`, `${codename}-security`], components: ['main', 'contrib', 'non-free', 'non-free-firmware'] };
}

const join = archiveUrl;
const get = archiveGet;

/**
 * The text of one Packages index, checked against the suite's signed Release
 * (SHA-256 and size of the compressed file fetched), or undefined if the
 * Release lists none or the mirror lacks it.
 */
async function packagesText(src: AptSource, suite: string, rel: Release, comp: string, arch: string, signal?: AbortSignal): Promise<Readable | undefined> {
  const name = `${comp}/binary-${arch}/Packages`;
  for (const ext of ['gz', 'xz'] as const) {
    const entry = rel.sha256.get(`${name}.${ext}`);
    if (!entry) continue;
    const bytes = await verifiedIndex(join(src.uri, `dists/${suite}/${name}.${ext}`), entry, signal);
    if (!bytes) continue;
    if (ext === 'gz') return Readable.from([bytes]).pipe(zlib.createGunzip());
    const child = spawn('xz', ['-dc'], { stdio: ['pipe', 'pipe', 'ignore'], signal });
    child.stdin.on('error', () => {}); // xz stopping early shows as a short index, not an EPIPE crash
    child.stdin.end(bytes);
    return child.stdout;
  }
  return undefined;
}

/** Debian's longest Packages lines (Depends, Description) are a few KiB. */
const MAX_INDEX_LINE = 1 << 20;

/**
 * Look up exact name/version/architecture triples in every configured index.
 * Only wanted stanzas are kept: a full index is ~60k stanzas.
 */
export async function findDebs(sources: AptSource[], arch: string, wanted: Set<string>, opts: { keyring?: string; signal?: AbortSignal } = {}): Promise<{ found: Map<string, DebRecord>; indexes: string[] }> {
  const { signal } = opts;
  const found = new Map<string, DebRecord>();
  const indexes: string[] = [];
  for (const src of sources) {
    for (const suite of src.suites) {
      if (found.size === wanted.size) return { found, indexes };
      // nothing of a suite is read before its InRelease checks out
      const rel = await suiteRelease(src.uri, suite, opts.keyring ?? src.keyring ?? DEBIAN_KEYRING, signal);
      if (!rel) continue;
      for (const comp of src.components) {
        if (found.size === wanted.size) return { found, indexes };
        const text = await packagesText(src, suite, rel, comp, arch, signal);
        if (!text) continue;
        indexes.push(`${src.uri} ${suite}/${comp}`);
        await scanPackagesIndex(text, `Packages index of ${src.uri} ${suite}/${comp}`, src.uri, wanted, found);
      }
    }
  }
  return { found, indexes };
}

/**
 * The records of `wanted` packages in one Packages index (its text as bytes),
 * added to `found` (the first listing of each wins); stanzas with a bad size,
 * hash or filename are skipped. Lines are bounded (MAX_INDEX_LINE).
 */
export async function scanPackagesIndex(text: AsyncIterable<Uint8Array | string>, what: string, uri: string, wanted: Set<string>, found: Map<string, DebRecord>): Promise<void> {
  let f = new Map<string, string>();
  const done = () => {
    const key = debKey(f.get('package') ?? '', f.get('version') ?? '', f.get('architecture') ?? '');
    if (wanted.has(key) && !found.has(key)) {
      const size = Number(f.get('size'));
      const sha256 = f.get('sha256') ?? '';
      const filename = f.get('filename') ?? '';
      if (Number.isSafeInteger(size) && size > 0 && /^[0-9a-f]{64}$/.test(sha256) && /^[\w.+~%:/-]+\.deb$/.test(filename) && !filename.split('/').includes('..') && !filename.startsWith('/')) {
        found.set(key, { name: f.get('package')!, version: f.get('version')!, arch: f.get('architecture')!, filename, size, sha256, uri });
      }
    }
    f = new Map();
  };
  for await (const line of boundedLines(text, MAX_INDEX_LINE, what)) {
    if (line === '') done();
    else if (line[0] !== ' ' && line[0] !== '\t') {
      const c = line.indexOf(':');
      const k = line.slice(0, c).toLowerCase();
      if (k === 'package' || k === 'version' || k === 'architecture' || k === 'filename' || k === 'size' || k === 'sha256') f.set(k, line.slice(c + 1).trim());
    }
  }
  done();
}

/**
 * Download a package into `dir` (atomically: temp + rename) unless a verified
 * copy is there, checking size and SHA-256 against the index. Returns its path.
 */
export async function fetchDeb(rec: DebRecord, dir: string, signal?: AbortSignal): Promise<string> {
  const dest = path.join(dir, `${rec.sha256}.deb`);
  if (fs.existsSync(dest) && (await fileSha256(dest)) === rec.sha256) return dest;
  await fsp.mkdir(dir, { recursive: true });
  const tmp = `${dest}.${process.pid}.${crypto.randomBytes(4).toString('hex')}`;
  const url = join(rec.uri, rec.filename);
  try {
    const r = await get(url, signal);
    if (!r?.body) throw new VmdnError('E_NOT_FOUND', `${rec.name} ${rec.version} (${rec.arch}): ${url} is gone from the mirror`, { package: rec.name, version: rec.version, url });
    const h = crypto.createHash('sha256');
    let n = 0;
    const out = fs.createWriteStream(tmp, { flags: 'wx' });
    for await (const b of Readable.fromWeb(r.body as never) as AsyncIterable<Buffer>) {
      n += b.length;
      if (n > rec.size) throw new VmdnError('E_CORRUPT_OBJECT', `${url}: longer than the ${rec.size} bytes its index says`, { url });
      h.update(b);
      if (!out.write(b)) await drained(out);
    }
    await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
    const got = h.digest('hex');
    if (n !== rec.size || got !== rec.sha256) throw new VmdnError('E_CORRUPT_OBJECT', `${url}: ${n} bytes with SHA-256 ${got.slice(0, 12)}, the index says ${rec.size} bytes, ${rec.sha256.slice(0, 12)}`, { url });
    await fsp.rename(tmp, dest);
    return dest;
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

export async function fileSha256(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const b of fs.createReadStream(file, { highWaterMark: 1 << 20 })) h.update(b as Buffer);
  return h.digest('hex');
}
