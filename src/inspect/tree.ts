/**
 * Walk a FileSystem from a path, producing one plain entry per node (what
 * `ls -l`, virt-ls and diffs need). Iterative with an explicit stack: depth
 * is bounded, and a directory inode already entered (a loop in a corrupt
 * image) is reported on its entry and not entered again, so a walk always
 * ends. Names are image data: kept as bytes, decoded only for display.
 */
import crypto from 'node:crypto';
import type { FileSystem, FsNode, NodeType, Timestamp } from '../fs/types.js';
import { resolvePath, resolvePathBytes, splitPathBytes } from '../os/fs-read.js';
import { asVmdnError } from '../errors.js';

export interface TreeEntry {
  /** '/'-separated path, UTF-8 decoded (invalid bytes become U+FFFD). */
  path: string;
  /** The exact path bytes, base64, present only when `path` is lossy (not valid UTF-8). */
  pathB64?: string;
  type: NodeType;
  perm: number;
  uid: number;
  gid: number;
  size: number;
  ino: number;
  nlink: number;
  mtime: Timestamp;
  atime: Timestamp;
  ctime: Timestamp;
  target?: string;
  rdev?: { major: number; minor: number };
  /** name -> value as "0x" + hex, like `getfattr -e hex`. */
  xattrs?: Record<string, string>;
  sha256?: string;
  /** Set when part of this node could not be read, or it was not entered (loop, depth). */
  error?: string;
}

export interface WalkOptions {
  recursive?: boolean;
  /** Directory levels below the start to enter (default 256). */
  maxDepth?: number;
  hash?: boolean;
  /** Read xattrs (default true). */
  xattrs?: boolean;
  /** Stop after this many entries (default 10 million). */
  maxEntries?: number;
  signal?: AbortSignal;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const lossy = new TextDecoder('utf-8');

export function decodePath(bytes: Uint8Array): { path: string; pathB64?: string } {
  try {
    return { path: utf8.decode(bytes) };
  } catch {
    return { path: lossy.decode(bytes), pathB64: Buffer.from(bytes).toString('base64') };
  }
}

export async function hashNode(fs: FileSystem, node: FsNode, signal?: AbortSignal): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const b of fs.readFile(node, signal)) h.update(b);
  return h.digest('hex');
}

async function describe(fs: FileSystem, node: FsNode, pathBytes: Uint8Array, opts: WalkOptions): Promise<TreeEntry> {
  const e: TreeEntry = {
    ...decodePath(pathBytes),
    type: node.type, perm: node.perm, uid: node.uid, gid: node.gid, size: node.size,
    ino: node.ino, nlink: node.nlink, mtime: node.mtime, atime: node.atime, ctime: node.ctime,
  };
  const errors: string[] = [];
  const attempt = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      errors.push(`${what}: ${asVmdnError(err).message}`);
    }
  };
  if (node.rdev) e.rdev = node.rdev;
  if (node.type === 'symlink') await attempt('readlink', async () => { e.target = await fs.readlink(node); });
  if (opts.xattrs !== false) {
    await attempt('xattrs', async () => {
      const x = await fs.xattrs(node);
      if (x.size) e.xattrs = Object.fromEntries([...x].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [k, '0x' + Buffer.from(v).toString('hex')]));
    });
  }
  if (opts.hash && node.type === 'file') await attempt('read', async () => { e.sha256 = await hashNode(fs, node, opts.signal); });
  if (errors.length) e.error = errors.join('; ');
  return e;
}

const SLASH = Buffer.from('/');

function joinPath(dir: Uint8Array, name: Uint8Array): Buffer {
  return dir.length === 1 && dir[0] === 0x2f ? Buffer.concat([SLASH, name]) : Buffer.concat([dir, SLASH, name]);
}

/** Normalised start path bytes ('/' or '/a/b'); the path itself is resolved inside the image. */
function startBytes(p: string | Uint8Array): Buffer {
  if (typeof p === 'string') return Buffer.from('/' + p.split('/').filter((c) => c !== '' && c !== '.').join('/'));
  return Buffer.concat([SLASH, ...splitPathBytes(p).flatMap((c, i) => (i ? [SLASH, c] : [c]))]);
}

/**
 * Entries under `start` in `find` order (a directory, then what it holds),
 * children sorted by name bytes. A start that is not a directory yields itself;
 * a directory start yields its contents (recursively with `recursive`).
 */
export async function* walkTree(fs: FileSystem, start: string | Uint8Array = '/', opts: WalkOptions = {}): AsyncGenerator<TreeEntry> {
  const maxDepth = opts.maxDepth ?? 256, maxEntries = opts.maxEntries ?? 10_000_000;
  // a start given as bytes (a name that is not UTF-8) is resolved by its exact bytes
  const top = typeof start === 'string' ? await resolvePath(fs, start) : await resolvePathBytes(fs, start);
  const topBytes = startBytes(start);
  if (top.type !== 'dir') {
    yield await describe(fs, top, topBytes, opts);
    return;
  }
  const entered = new Set<number>([top.ino]);
  type Item = { node: FsNode; path: Buffer; depth: number };
  const stack: Item[] = [];
  const pushChildren = async (dir: FsNode, path: Buffer, depth: number): Promise<void> => {
    const entries = await fs.readdir(dir);
    entries.sort((a, b) => Buffer.compare(a.nameBytes, b.nameBytes));
    // Reverse so the stack pops them in name order.
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i]!;
      stack.push({ node: await fs.stat(e.ino), path: joinPath(path, e.nameBytes), depth });
    }
  };
  await pushChildren(top, topBytes, 1);
  let n = 0;
  while (stack.length) {
    opts.signal?.throwIfAborted();
    const { node, path, depth } = stack.pop()!;
    const entry = await describe(fs, node, path, opts);
    if (++n > maxEntries) {
      yield { ...entry, error: `listing stopped: more than ${maxEntries} entries` };
      return;
    }
    if (node.type === 'dir' && opts.recursive) {
      if (entered.has(node.ino)) entry.error = `directory loop: inode ${node.ino} was already entered; not entered again`;
      else if (depth >= maxDepth) entry.error = `not entered: deeper than ${maxDepth} levels`;
      else {
        entered.add(node.ino);
        try {
          await pushChildren(node, path, depth + 1);
        } catch (err) {
          if (opts.signal?.aborted) throw err;
          entry.error = `readdir: ${asVmdnError(err).message}`;
        }
      }
    }
    yield entry;
  }
}
