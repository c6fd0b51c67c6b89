/**
 * Files layer of `vmdn diff`, in the spirit of virt-diff: paths added,
 * removed, and changed, each change saying what changed (content, type,
 * mode, owner, mtime, xattrs, link target, device numbers). Content is
 * compared by size first and by SHA-256 only when sizes are equal.
 */
import type { FileSystem } from '../fs/types.js';
import { walkTree, hashNode, type TreeEntry } from './tree.js';

export type ChangeKind = 'type' | 'content' | 'mode' | 'owner' | 'mtime' | 'xattrs' | 'target' | 'rdev';

export interface PathChange {
  path: string;
  pathB64?: string;
  what: ChangeKind[];
  a: Partial<TreeEntry>;
  b: Partial<TreeEntry>;
  /** xattr names added, removed or changed. */
  xattrs?: string[];
}

export interface FilesDiff {
  added: Array<Pick<TreeEntry, 'path' | 'pathB64' | 'type' | 'size'>>;
  removed: Array<Pick<TreeEntry, 'path' | 'pathB64' | 'type' | 'size'>>;
  changed: PathChange[];
  errors: string[];
}

const keyOf = (e: TreeEntry): string => (e.pathB64 ? `b64:${e.pathB64}` : e.path);

async function index(fs: FileSystem, signal?: AbortSignal): Promise<Map<string, TreeEntry>> {
  const m = new Map<string, TreeEntry>();
  for await (const e of walkTree(fs, '/', { recursive: true, signal })) m.set(keyOf(e), e);
  return m;
}

const brief = (e: TreeEntry) => ({ path: e.path, ...(e.pathB64 ? { pathB64: e.pathB64 } : {}), type: e.type, size: e.size });
const sameTime = (x: TreeEntry['mtime'], y: TreeEntry['mtime']) => x.sec === y.sec && x.nsec === y.nsec;

function xattrChanges(a: TreeEntry, b: TreeEntry): string[] {
  const xa = a.xattrs ?? {}, xb = b.xattrs ?? {};
  return [...new Set([...Object.keys(xa), ...Object.keys(xb)])].filter((k) => xa[k] !== xb[k]).sort();
}

export async function diffFiles(fa: FileSystem, fb: FileSystem, signal?: AbortSignal): Promise<FilesDiff> {
  const [ia, ib] = [await index(fa, signal), await index(fb, signal)];
  const out: FilesDiff = { added: [], removed: [], changed: [], errors: [] };
  for (const [k, a] of ia) {
    const b = ib.get(k);
    if (!b) { out.removed.push(brief(a)); continue; }
    for (const [side, e] of [['a', a], ['b', b]] as const) if (e.error) out.errors.push(`${side}:${e.path}: ${e.error}`);
    const what: ChangeKind[] = [];
    const da: Partial<TreeEntry> = {}, db: Partial<TreeEntry> = {};
    const note = (kind: ChangeKind, fields: Array<keyof TreeEntry>) => {
      what.push(kind);
      for (const f of fields) {
        (da as Record<string, unknown>)[f] = a[f];
        (db as Record<string, unknown>)[f] = b[f];
      }
    };
    if (a.type !== b.type) note('type', ['type']);
    else if (a.type === 'file') {
      if (a.size !== b.size) note('content', ['size']);
      else {
        signal?.throwIfAborted();
        try {
          const [ha, hb] = [await hashNode(fa, await fa.stat(a.ino), signal), await hashNode(fb, await fb.stat(b.ino), signal)];
          if (ha !== hb) { note('content', ['size']); da.sha256 = ha; db.sha256 = hb; }
        } catch (err) {
          if (signal?.aborted) throw err;
          out.errors.push(`${a.path}: cannot compare content: ${(err as Error).message}`);
        }
      }
    } else if (a.type === 'symlink' && a.target !== b.target) note('target', ['target']);
    else if ((a.type === 'chardev' || a.type === 'blockdev') && (a.rdev?.major !== b.rdev?.major || a.rdev?.minor !== b.rdev?.minor)) note('rdev', ['rdev']);
    if (a.perm !== b.perm) note('mode', ['perm']);
    if (a.uid !== b.uid || a.gid !== b.gid) note('owner', ['uid', 'gid']);
    if (!sameTime(a.mtime, b.mtime)) note('mtime', ['mtime']);
    const xc = xattrChanges(a, b);
    if (xc.length) note('xattrs', ['xattrs']);
    if (what.length) out.changed.push({ path: b.path, ...(b.pathB64 ? { pathB64: b.pathB64 } : {}), what, a: da, b: db, ...(xc.length ? { xattrs: xc } : {}) });
  }
  for (const [k, b] of ib) if (!ia.has(k)) out.added.push(brief(b));
  const byPath = (x: { path: string }, y: { path: string }) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0);
  out.added.sort(byPath);
  out.removed.sort(byPath);
  out.changed.sort(byPath);
  return out;
}
