/**
 * Trusting a Debian archive fetched over plain HTTP: a suite's InRelease is
 * verified with gpgv against the archive keyring, and only the text gpgv
 * verified (its --output, never the bytes as served) is parsed as the Release.
 * Every index is then checked against the Release's SHA-256 and size before a
 * line of it is read, and every .deb against its index (apt-mirror.ts). A
 * mirror that serves anything the archive did not sign is refused.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { VmdnError } from '../errors.js';
import { MAX_RELEASE_BYTES, checkRelease, parseRelease, type Release, type ReleaseEntry } from './release.js';

/** Debian's keyring (package debian-archive-keyring): the default for `--keyring`. */
export const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

export const archiveUrl = (uri: string, p: string): string => `${uri.replace(/\/+$/, '')}/${p}`;

/** GET with retries on 5xx and network errors; undefined on 404/410. */
export async function archiveGet(url: string, signal?: AbortSignal): Promise<Response | undefined> {
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await fetch(url, { signal });
      if (r.status === 404 || r.status === 410) return undefined;
      if (r.ok) return r;
      if (r.status < 500 || attempt >= 3) throw new VmdnError('E_UNREACHABLE', `${url}: HTTP ${r.status}`, { url, status: r.status });
    } catch (err) {
      if (err instanceof VmdnError || signal?.aborted || attempt >= 3) {
        if (err instanceof VmdnError) throw err;
        throw new VmdnError('E_UNREACHABLE', `${url}: ${(err as Error).message}`, { url }, { cause: err });
      }
    }
    await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
  }
}

/** A response body read whole, refused (`code`) as soon as it passes `max` bytes. */
async function bodyAtMost(r: Response, max: number, url: string, code: 'E_UNTRUSTED' | 'E_FORMAT'): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const b of Readable.fromWeb(r.body as never) as AsyncIterable<Buffer>) {
    n += b.length;
    if (n > max) throw new VmdnError(code, `${url}: longer than ${max} bytes`, { url, max });
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** A binary keyring as gpgv reads it; an ASCII-armored one (.asc) is unwrapped. */
async function keyringFile(keyring: string, dir: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(keyring);
  } catch (err) {
    throw new VmdnError('E_USAGE', `cannot read the archive keyring ${keyring} (${(err as NodeJS.ErrnoException).code}): install debian-archive-keyring or give --keyring FILE`, { keyring }, { cause: err });
  }
  const text = bytes.subarray(0, 64).toString('latin1');
  if (!text.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')) return path.resolve(keyring);
  const body = bytes.toString('latin1').split(/\r?\n\r?\n/).slice(1).join('\n').split('\n').filter((l) => /^[A-Za-z0-9+/=]+$/.test(l.trim()) && !l.startsWith('=')).join('');
  const out = path.join(dir, 'keyring.gpg');
  await fsp.writeFile(out, Buffer.from(body, 'base64'));
  return out;
}

const CLEARSIGN = /^-----BEGIN PGP SIGNED MESSAGE-----\r?\n/;

/**
 * The signed text of a clearsigned InRelease, verified by gpgv against
 * `keyring`. Refused (E_UNTRUSTED): anything that is not exactly one
 * clearsigned message (text before or after it would be ignored by gpgv but
 * read by a naive parser), a bad signature, and one made by no key of the keyring.
 */
export async function verifyClearsigned(bytes: Buffer, keyring: string, where: string, signal?: AbortSignal): Promise<string> {
  const text = bytes.toString('latin1');
  if (!CLEARSIGN.test(text)) throw new VmdnError('E_UNTRUSTED', `${where}: not a clearsigned message (the archive is unsigned, or the mirror altered it)`, { where });
  const count = (s: string) => text.split(s).length - 1;
  const end = text.lastIndexOf('-----END PGP SIGNATURE-----');
  if (count('-----BEGIN PGP SIGNED MESSAGE-----') !== 1 || count('-----BEGIN PGP SIGNATURE-----') !== 1 || count('-----END PGP SIGNATURE-----') !== 1 || text.slice(end + 27).trim() !== '') {
    throw new VmdnError('E_UNTRUSTED', `${where}: more than one clearsigned message, or text around it`, { where });
  }
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vmdn-gpgv-'));
  try {
    const ring = await keyringFile(keyring, dir);
    await fsp.mkdir(path.join(dir, 'home'), { mode: 0o700 });
    await fsp.writeFile(path.join(dir, 'InRelease'), bytes);
    const out = path.join(dir, 'Release');
    const { status, stderr } = await gpgv(['--homedir', path.join(dir, 'home'), '--keyring', ring, '--status-fd', '1', '--output', out, path.join(dir, 'InRelease')], signal);
    const lines = status.split('\n').filter((l) => l.startsWith('[GNUPG:] '));
    const kw = (k: string) => lines.filter((l) => l.split(' ')[1] === k);
    const signers = kw('VALIDSIG').map((l) => l.split(' ')[2]!);
    // a BADSIG anywhere spoils the message; unknown extra signers (ERRSIG) are fine if one known key signed
    if (kw('BADSIG').length || kw('PLAINTEXT').length !== 1 || !kw('GOODSIG').length || !signers.length) {
      const why = kw('BADSIG').length ? 'a bad signature (the signed text was altered)' : kw('ERRSIG').length || kw('NO_PUBKEY').length ? `signed by no key of ${keyring}` : 'no valid signature';
      throw new VmdnError('E_UNTRUSTED', `${where}: ${why}`, { where, keyring, gpgv: stderr.trim().split('\n').slice(-3).join('; ') });
    }
    const verified = await fsp.readFile(out);
    if (verified.length > MAX_RELEASE_BYTES) throw new VmdnError('E_UNTRUSTED', `${where}: the signed Release is longer than ${MAX_RELEASE_BYTES} bytes`, { where });
    return verified.toString('utf8');
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

function gpgv(args: string[], signal?: AbortSignal): Promise<{ status: string; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn('gpgv', args, { stdio: ['ignore', 'pipe', 'pipe'], signal });
    let status = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (status = (status + b.toString('utf8')).slice(-1 << 20)));
    child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString('utf8')).slice(-1 << 16)));
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new VmdnError('E_USAGE', 'gpgv is not installed (Debian package gpgv): it verifies the archive\'s InRelease', {}, { cause: err }) : err));
    child.on('close', (code) => resolve({ status, stderr, code }));
  });
}

/**
 * The verified Release of dists/SUITE, or undefined if the archive has no such
 * suite (no InRelease and no Release). A suite with a Release but no InRelease
 * is refused: vmdn verifies only clearsigned InRelease files.
 */
export async function suiteRelease(uri: string, suite: string, keyring: string, signal?: AbortSignal, now = new Date()): Promise<Release | undefined> {
  const url = archiveUrl(uri, `dists/${suite}/InRelease`);
  const r = await archiveGet(url, signal);
  if (!r?.body) {
    const plain = await archiveGet(archiveUrl(uri, `dists/${suite}/Release`), signal);
    if (!plain) return undefined;
    await plain.body?.cancel();
    throw new VmdnError('E_UNTRUSTED', `${url}: missing, but the suite has a Release: vmdn needs the signed InRelease to trust the archive`, { url });
  }
  const text = await verifyClearsigned(await bodyAtMost(r, MAX_RELEASE_BYTES, url, 'E_UNTRUSTED'), keyring, url, signal);
  const rel = parseRelease(text);
  checkRelease(rel, suite, now, url);
  return rel;
}

/** An index file fetched whole and checked against its Release entry; undefined if the mirror lacks it. */
export async function verifiedIndex(url: string, entry: ReleaseEntry, signal?: AbortSignal): Promise<Buffer | undefined> {
  const r = await archiveGet(url, signal);
  if (!r?.body) return undefined;
  const bytes = await bodyAtMost(r, entry.size, url, 'E_UNTRUSTED');
  const got = crypto.createHash('sha256').update(bytes).digest('hex');
  if (bytes.length !== entry.size || got !== entry.sha256) {
    throw new VmdnError('E_UNTRUSTED', `${url}: ${bytes.length} bytes with SHA-256 ${got.slice(0, 12)}, the signed Release says ${entry.size} bytes, ${entry.sha256.slice(0, 12)}: the mirror serves an index the archive did not sign`, { url });
  }
  return bytes;
}
