/**
 * The file tree of one filesystem, as the files strategy records it
 * (docs/format.md, "files"). Two JSON-lines texts, one line per entry in walk
 * order (every directory before what it holds):
 *
 *   tree:  path, type, mode, owner, size, content chunks, link target,
 *          device numbers, hard link, xattrs -- what stays put between
 *          revisions, so unchanged runs of lines give unchanged objects;
 *   times: [mtime, atime, ctime, crtime] as [sec, nsec] pairs -- what changes
 *          on every copy, kept apart so it does not spoil the tree's dedup.
 *
 * Both come from an image, so decoding validates every field: paths are
 * data, never allowed to climb out of the directory they are rebuilt in.
 */
import { VmdnError } from '../errors.js';
import { isDigest, type Digest } from '../store/digest.js';
import type { ChunkEntry } from './manifest.js';
import type { NodeType, Timestamp } from '../fs/types.js';

export const TYPE_CODES: Record<NodeType, string> = { file: 'f', dir: 'd', symlink: 'l', chardev: 'c', blockdev: 'b', fifo: 'p', socket: 's' };
const CODE_TYPES = new Map(Object.entries(TYPE_CODES).map(([t, c]) => [c, t as NodeType]));

export interface TreeRecord {
  /** Raw path bytes below the filesystem root, '/'-joined; empty for the root. */
  path: Uint8Array;
  type: NodeType;
  perm: number;
  uid: number;
  gid: number;
  /** Regular files: size, and content as [offset, length, digest] (uncovered bytes are zero)... */
  size?: number;
  chunks?: ChunkEntry[];
  /**
   * ...or, for small files, where the content starts in the filesystem's small-file stream.
   * Not written out: small files follow each other in tree order, so offsets are implied (and an
   * inserted file does not change every later line).
   */
  streamOffset?: number;
  /** ...or, packages strategy: the index (in the filesystem's `packages`) of the package holding this file at this path. */
  pkg?: number;
  /** Regular files: index of the earlier entry this one is a hard link of. */
  link?: number;
  target?: Uint8Array;
  rdev?: [number, number];
  /** name -> value bytes. */
  xattrs?: Map<string, Uint8Array>;
  times: { mtime: Timestamp; atime: Timestamp; ctime: Timestamp; crtime?: Timestamp };
}

/** Bounds: a hostile manifest must not make us allocate or loop without end. */
export const MAX_TREE_ENTRIES = 16 * 1024 * 1024;
const MAX_FILE = 2 ** 50;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function text(b: Uint8Array): { s?: string; b64?: string } {
  try {
    const s = utf8.decode(b);
    if (!s.includes('\n')) return { s };
  } catch {
    // not UTF-8: carried as base64
  }
  return { b64: Buffer.from(b).toString('base64') };
}

export function encodeTree(records: TreeRecord[]): { tree: string; times: string } {
  const tree: string[] = [];
  const times: string[] = [];
  for (const r of records) {
    const p = text(r.path);
    const o: Record<string, unknown> = p.s !== undefined ? { p: p.s } : { p64: p.b64 };
    o.t = TYPE_CODES[r.type];
    o.m = r.perm;
    o.u = r.uid;
    o.g = r.gid;
    if (r.type === 'file') {
      if (r.link !== undefined) o.h = r.link;
      else {
        o.s = r.size;
        if (r.pkg !== undefined) o.k = r.pkg;
        else if (r.streamOffset !== undefined) o.z = 1;
        else o.c = r.chunks;
      }
    }
    if (r.target) {
      const t = text(r.target);
      if (t.s !== undefined) o.l = t.s;
      else o.l64 = t.b64;
    }
    if (r.rdev) o.d = r.rdev;
    if (r.xattrs?.size) o.x = Object.fromEntries([...r.xattrs].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, Buffer.from(v).toString('hex')]));
    tree.push(JSON.stringify(o));
    const t = r.times;
    const pair = (x: Timestamp) => [x.sec, x.nsec];
    times.push(JSON.stringify([...pair(t.mtime), ...pair(t.atime), ...pair(t.ctime), ...(t.crtime ? pair(t.crtime) : [])]));
  }
  return { tree: tree.join('\n') + '\n', times: times.join('\n') + '\n' };
}

const bad = (line: number, msg: string): never => {
  throw new VmdnError('E_MANIFEST', `file tree entry ${line}: ${msg}`, { entry: line });
};
const isInt = (n: unknown, max: number): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 && n <= max;
/** A path's bytes as a map key (latin1 maps bytes 1:1 to code units). */
export const pathKey = (b: Uint8Array): string => Buffer.from(b).toString('latin1');
/** The last component of a path. */
export const baseName = (p: Uint8Array): Uint8Array => p.subarray(p.lastIndexOf(0x2f) + 1);

/** Refuse any component a rebuild could be tricked with: empty, '.', '..', or holding NUL. */
function checkPath(b: Uint8Array, i: number): void {
  if (b.length === 0) {
    if (i !== 0) bad(i, 'empty path');
    return;
  }
  if (b.length > 65536) bad(i, 'path too long');
  for (const comp of Buffer.from(b).toString('latin1').split('/')) {
    if (comp === '' || comp === '.' || comp === '..' || comp.includes('\0') || comp.length > 255) bad(i, `bad path component ${JSON.stringify(comp)}`);
  }
}

function timestamp(v: unknown[], at: number, i: number): Timestamp {
  const sec = v[at];
  const nsec = v[at + 1];
  if (typeof sec !== 'number' || !Number.isSafeInteger(sec) || Math.abs(sec) > 2 ** 40 || !isInt(nsec, 999_999_999)) bad(i, 'bad time');
  return { sec: sec as number, nsec: nsec as number };
}

/** `streamBytes`: length of the small-file stream small files are read from; `packages`: how many packages `k` may point at. */
export function decodeTree(tree: string, times: string, streamBytes = 0, packages = 0): TreeRecord[] {
  const lines = tree.split('\n');
  const tlines = times.split('\n');
  if (lines.at(-1) !== '' || tlines.at(-1) !== '') throw new VmdnError('E_MANIFEST', 'file tree: missing final newline');
  lines.pop();
  tlines.pop();
  if (lines.length !== tlines.length) throw new VmdnError('E_MANIFEST', `file tree has ${lines.length} entries but ${tlines.length} time lines`);
  if (lines.length === 0 || lines.length > MAX_TREE_ENTRIES) throw new VmdnError('E_MANIFEST', `file tree: ${lines.length} entries`);
  const types = new Map<string, NodeType>();
  const out: TreeRecord[] = [];
  let streamEnd = 0;
  for (let i = 0; i < lines.length; i++) {
    let o: Record<string, unknown>;
    let t: unknown;
    try {
      o = JSON.parse(lines[i]!);
      t = JSON.parse(tlines[i]!);
    } catch {
      return bad(i, 'not JSON');
    }
    if (!o || typeof o !== 'object') bad(i, 'not an object');
    const path = typeof o.p === 'string' ? Buffer.from(o.p, 'utf8') : typeof o.p64 === 'string' ? Buffer.from(o.p64, 'base64') : bad(i, 'no path');
    checkPath(path, i);
    const key = pathKey(path);
    if (types.has(key)) bad(i, 'duplicate path');
    const slash = path.lastIndexOf(0x2f);
    const parent = i === 0 ? undefined : pathKey(slash < 0 ? new Uint8Array(0) : path.subarray(0, slash));
    if (i > 0 && types.get(parent!) !== 'dir') bad(i, 'parent is not an earlier directory');
    const type = CODE_TYPES.get(o.t as string) ?? bad(i, `bad type ${JSON.stringify(o.t)}`);
    if (i === 0 && type !== 'dir') bad(i, 'root is not a directory');
    types.set(key, type);
    if (!isInt(o.m, 0o7777) || !isInt(o.u, 2 ** 32 - 1) || !isInt(o.g, 2 ** 32 - 1)) bad(i, 'bad mode or owner');
    if (!Array.isArray(t) || (t.length !== 6 && t.length !== 8)) bad(i, 'bad time line');
    const tv = t as unknown[];
    const r: TreeRecord = {
      path, type, perm: o.m as number, uid: o.u as number, gid: o.g as number,
      times: { mtime: timestamp(tv, 0, i), atime: timestamp(tv, 2, i), ctime: timestamp(tv, 4, i), ...(tv.length === 8 ? { crtime: timestamp(tv, 6, i) } : {}) },
    };
    if (type === 'file') {
      if (o.h !== undefined) {
        if (!isInt(o.h, i - 1) || out[o.h]!.type !== 'file' || out[o.h]!.link !== undefined) bad(i, 'bad hard link');
        r.link = o.h as number;
      } else if (o.k !== undefined) {
        if (!isInt(o.k, packages - 1) || !isInt(o.s, MAX_FILE) || o.s === 0) bad(i, 'bad package reference');
        r.pkg = o.k as number;
        r.size = o.s as number;
      } else if (o.z === 1) {
        // small files follow each other in the stream, in tree order
        if (!isInt(o.s, MAX_FILE) || streamEnd + (o.s as number) > streamBytes) bad(i, 'small file past the end of the stream');
        r.size = o.s as number;
        r.streamOffset = streamEnd;
        streamEnd += r.size;
      } else {
        if (!isInt(o.s, MAX_FILE) || !Array.isArray(o.c)) bad(i, 'bad size or content');
        r.size = o.s as number;
        r.chunks = checkChunks(o.c as unknown[], r.size, i);
      }
    }
    if (type === 'symlink') {
      r.target = typeof o.l === 'string' ? Buffer.from(o.l, 'utf8') : typeof o.l64 === 'string' ? Buffer.from(o.l64, 'base64') : bad(i, 'symlink without target');
      if (r.target.length === 0 || r.target.length > 65536 || r.target.includes(0)) bad(i, 'bad symlink target');
    }
    if (type === 'chardev' || type === 'blockdev') {
      const d = o.d as unknown[];
      if (!Array.isArray(d) || d.length !== 2 || !isInt(d[0], 0xfff) || !isInt(d[1], 0xfffff)) bad(i, 'bad device numbers');
      r.rdev = [d[0] as number, d[1] as number];
    }
    if (o.x !== undefined) {
      if (!o.x || typeof o.x !== 'object') bad(i, 'bad xattrs');
      r.xattrs = new Map();
      for (const [k, v] of Object.entries(o.x as Record<string, unknown>)) {
        if (!k || k.length > 255 || k.includes('\0') || typeof v !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(v) || v.length > 2 * 65536) bad(i, `bad xattr ${JSON.stringify(k)}`);
        r.xattrs.set(k, Buffer.from(v as string, 'hex'));
      }
    }
    out.push(r);
  }
  if (streamEnd !== streamBytes) throw new VmdnError('E_MANIFEST', `file tree: small files hold ${streamEnd} bytes, the stream ${streamBytes}`);
  return out;
}

function checkChunks(c: unknown[], size: number, i: number): ChunkEntry[] {
  let end = 0;
  for (const e of c) {
    if (!Array.isArray(e) || e.length !== 3) bad(i, 'bad chunk entry');
    const [o, l, d] = e as unknown[];
    if (!isInt(o, size) || !isInt(l, 16 << 20) || l === 0 || (o as number) < end || (o as number) + (l as number) > size || !isDigest(d)) bad(i, 'bad chunk');
    end = (o as number) + (l as number);
  }
  return c as ChunkEntry[];
}

/** Each directory's entries (record indices, in tree order), by the directory's record index. */
export function childrenOf(records: TreeRecord[]): Map<number, number[]> {
  const index = new Map(records.map((r, i) => [pathKey(r.path), i] as const));
  const children = new Map<number, number[]>();
  records.forEach((r, i) => {
    if (i === 0) return;
    const slash = r.path.lastIndexOf(0x2f);
    const parent = index.get(pathKey(slash < 0 ? new Uint8Array(0) : r.path.subarray(0, slash)))!;
    (children.get(parent) ?? children.set(parent, []).get(parent)!).push(i);
  });
  return children;
}

/** Every content digest the tree references. */
export function treeDigests(records: TreeRecord[]): Set<Digest> {
  const s = new Set<Digest>();
  for (const r of records) for (const c of r.chunks ?? []) s.add(c[2]);
  return s;
}
