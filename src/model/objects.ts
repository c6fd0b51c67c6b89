/**
 * The one answer to "which objects does this image need": every object a
 * manifest names, directly (disk chunks; a filesystem's tree, times and
 * small-file stream; its packages' tars and indexes) or through its file tree
 * (big files' content chunks); the OVF descriptor of an image from an OVA. Origin, edge, push, pull, warm, gc and verify
 * all use it, so a kind of object added to the format is added here once.
 */
import type { Digest } from '../store/digest.js';
import type { ReadableStore } from '../store/types.js';
import { VmdnError } from '../errors.js';
import type { FsRebuild, Manifest } from './manifest.js';
import { decodeTree, treeDigests, type TreeRecord } from './files-tree.js';
import { packageObjects } from './package-ref.js';

/** What an object is to its image: used by verify to say what went missing. */
export type ObjectRole = 'chunk' | 'tree' | 'times' | 'stream' | 'file-content' | 'package' | 'ovf';

/** Objects a manifest names itself, without reading any of them. */
export function namedObjects(m: Manifest): Map<Digest, ObjectRole> {
  const out = new Map<Digest, ObjectRole>();
  const add = (d: Digest, role: ObjectRole) => {
    if (!out.has(d)) out.set(d, role);
  };
  for (const c of m.chunks) add(c[2], 'chunk');
  if (m.ovf) add(m.ovf, 'ovf');
  for (const f of m.filesystems ?? []) {
    for (const d of f.tree) add(d, 'tree');
    for (const d of f.times) add(d, 'times');
    for (const c of f.stream) add(c[2], 'stream');
    for (const p of f.packages ?? []) for (const d of packageObjects(p)) add(d, 'package');
  }
  return out;
}

/** A filesystem's tree records, read from its tree and times objects (verified by the store). */
export async function loadTree(f: FsRebuild, store: ReadableStore, signal?: AbortSignal): Promise<TreeRecord[]> {
  const text = async (ds: Digest[]) => Buffer.concat(await Promise.all(ds.map((d) => store.get(d, { signal })))).toString('utf8');
  const records = decodeTree(await text(f.tree), await text(f.times), f.streamBytes, f.packages?.length ?? 0);
  if (records.length !== f.entries) throw new VmdnError('E_MANIFEST', `filesystem ${f.index}: tree has ${records.length} entries, manifest says ${f.entries}`);
  return records;
}

export interface ObjectWalkOptions {
  signal?: AbortSignal;
  /** Receives each filesystem's records, in manifest order (so callers need not read the trees again). */
  trees?: TreeRecord[][];
}

/** Every object a manifest needs, with its role; the manifest object itself is not included. */
export async function imageObjectRoles(m: Manifest, store: ReadableStore, opts: ObjectWalkOptions = {}): Promise<Map<Digest, ObjectRole>> {
  const out = namedObjects(m);
  for (const f of m.filesystems ?? []) {
    const records = await loadTree(f, store, opts.signal);
    opts.trees?.push(records);
    for (const d of treeDigests(records)) if (!out.has(d)) out.set(d, 'file-content');
  }
  return out;
}

/** Every object a manifest needs (the trees are read through `store` to find file content). */
export async function imageObjects(m: Manifest, store: ReadableStore, opts: ObjectWalkOptions = {}): Promise<Set<Digest>> {
  return new Set((await imageObjectRoles(m, store, opts)).keys());
}
