/**
 * Reading a Debian binary package's data member. dpkg-deb does the ar and
 * decompression part (xz, zstd, gzip, bzip2 -- whatever dpkg itself accepts,
 * and exactly as dpkg would unpack it); tar-stream parses the tar it prints.
 * Nothing here runs maintainer scripts or writes outside what the caller
 * asks for: member names are data, normalised and checked like image paths.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import type tar from 'tar-stream';
import { createRequire } from 'node:module';
import { VmdnError } from '../errors.js';
import { drained } from '../util/drain.js';

/** Bounds for untrusted packages: members and sizes. */
const MAX_MEMBERS = 1_000_000;
const MAX_MEMBER = 2 ** 40;

export type DebMemberType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';

export interface DebMember {
  /** Path below the root, no leading './' or '/', as latin1 (one char per byte; see files-tree pathKey). */
  path: string;
  type: DebMemberType;
  size: number;
  mode: number;
}

/** A member's header and, for regular files, its content. */
export interface DebEntry extends DebMember {
  body: AsyncIterable<Buffer>;
}

const TYPES: Record<string, DebMemberType> = { file: 'file', 'contiguous-file': 'file', directory: 'dir', symlink: 'symlink', link: 'hardlink' };

/** './usr/bin/x' -> 'usr/bin/x'; undefined for the root itself; refuses '..' and empty components. */
export function memberPath(name: string): string | undefined {
  const parts = name.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.length === 0) return undefined;
  if (parts.some((c) => c === '..' || c.includes('\0'))) throw new VmdnError('E_FORMAT', `package member ${JSON.stringify(name)} climbs out of the root`);
  return parts.join('/');
}

/** The package's data member as an uncompressed tar, from dpkg-deb (killed if the reader stops early). */
export async function* dpkgTar(debFile: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const child = spawn('dpkg-deb', ['--fsys-tarfile', debFile], { stdio: ['ignore', 'pipe', 'pipe'], signal });
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', (e) => reject(new VmdnError('E_IO', `dpkg-deb: ${e.message}`, { file: debFile }, { cause: e })));
    child.on('close', resolve);
  });
  exited.catch(() => {});
  let completed = false;
  try {
    for await (const b of child.stdout) yield b as Buffer;
    completed = true;
  } finally {
    // a reader that stopped early leaves dpkg-deb blocked on a full pipe
    if (!completed) child.kill();
  }
  const code = await exited;
  if (code !== 0) throw new VmdnError('E_FORMAT', `dpkg-deb --fsys-tarfile ${debFile} failed (exit ${code}): ${err.trim()}`, { file: debFile, code });
}

const unreadable = (e: unknown, what: string): VmdnError =>
  e instanceof VmdnError ? e : new VmdnError('E_FORMAT', `${what}: not a readable package (${(e as Error).message})`, { what }, { cause: e });

/** A member's body: the tar stream ending inside it is E_FORMAT for whoever reads it (fuzzing found a bare Error). */
async function* guarded(body: AsyncIterable<Buffer>, what: string): AsyncGenerator<Buffer> {
  try {
    for await (const b of body) yield b;
  } catch (e) {
    throw unreadable(e, what);
  }
}

/**
 * Every member of a tar stream, in archive order. The caller must consume
 * (or skip) each entry's body before asking for the next one.
 */
export async function* readTar(source: AsyncIterable<Uint8Array>, what: string): AsyncGenerator<DebEntry> {
  // latin1 keeps every byte of a name as one char, as image paths are keyed
  // loaded at the first .deb read: every vmdn command's start paid for it otherwise
  const extract = (createRequire(import.meta.url)('tar-stream') as typeof tar).extract({ filenameEncoding: 'latin1' } as Parameters<typeof tar.extract>[0]);
  const feed = (async () => {
    for await (const b of source) {
      if (extract.destroyed) break; // the reader stopped: stop reading the source too
      if (!extract.write(b)) await drained(extract);
    }
    extract.end(() => {});
  })();
  feed.catch((e) => extract.destroy(e));
  let n = 0;
  let completed = false;
  try {
    for await (const entry of extract) {
      if (++n > MAX_MEMBERS) throw new VmdnError('E_FORMAT', `${what}: more than ${MAX_MEMBERS} members`);
      const h = entry.header;
      const path = memberPath(h.name);
      // no size at all is tar-stream failing to read the field (it would then wait forever for the body: found by fuzzing)
      const size = h.size;
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || size > MAX_MEMBER) throw new VmdnError('E_FORMAT', `${what}: member ${h.name} has a bad size`);
      if (path === undefined) {
        entry.resume();
        continue;
      }
      yield { path, type: TYPES[h.type ?? ''] ?? 'other', size, mode: (h.mode ?? 0) & 0o7777, body: guarded(entry as AsyncIterable<Buffer>, what) };
      // whatever the caller left unread
      entry.resume();
    }
    await feed;
    completed = true;
  } catch (e) {
    throw unreadable(e, what);
  } finally {
    if (!completed) {
      extract.destroy();
      // stop the source too (dpkg-deb is killed by its generator's return)
      await (source as AsyncGenerator<Uint8Array>).return?.(undefined);
    }
  }
}

export interface DebFileIndex {
  size: number;
  sha256: string;
}

/** Regular files of a package by path, with their size and SHA-256 (what an image's files are matched against). */
export async function indexTar(entries: AsyncIterable<DebEntry>, what: string): Promise<Map<string, DebFileIndex>> {
  const out = new Map<string, DebFileIndex>();
  for await (const e of entries) {
    if (e.type !== 'file') continue;
    const h = crypto.createHash('sha256');
    let n = 0;
    for await (const b of e.body) {
      h.update(b);
      n += b.length;
    }
    if (n !== e.size) throw new VmdnError('E_FORMAT', `${what}: member ${e.path} is ${n} bytes, its header says ${e.size}`);
    out.set(e.path, { size: n, sha256: h.digest('hex') });
  }
  return out;
}
