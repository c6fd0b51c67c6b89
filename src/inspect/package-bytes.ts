/**
 * `vmdn inspect --package-bytes`: how an image's file bytes split between
 * unmodified package files, modified package files and the image's own data,
 * judged by the image's own dpkg database (info/*.list + md5sums/Conffiles),
 * so no archive is needed. A stored packages-strategy image answers for its
 * package references from its tree (they matched at import); its other files
 * are hashed like any image's.
 */
import crypto from 'node:crypto';
import type { FileSystem, FsNode } from '../fs/types.js';
import { walkFs } from '../fs/ext4/walk.js';
import { readDpkgFiles } from '../os/dpkg-files.js';
import { CanonicalPaths } from '../os/canonical-path.js';

export interface PackageBytes {
  packages: { files: number; bytes: number };
  modified: { files: number; bytes: number };
  own: { files: number; bytes: number };
}

/** Filesystems that know, without reading, that a file is an unmodified package file (TreeFs). */
export interface KnowsPackageFiles {
  fromPackage(node: FsNode): boolean;
}
const knows = (fs: FileSystem): fs is FileSystem & KnowsPackageFiles => typeof (fs as Partial<KnowsPackageFiles>).fromPackage === 'function';

async function md5Of(fs: FileSystem, node: FsNode, signal?: AbortSignal): Promise<string> {
  const h = crypto.createHash('md5');
  for await (const b of fs.readFile(node, signal)) h.update(b);
  return h.digest('hex');
}

export async function packageBytes(fs: FileSystem, signal?: AbortSignal): Promise<PackageBytes | undefined> {
  const db = await readDpkgFiles(fs);
  if (!db) return undefined;
  // where each recorded MD5 applies, through the image's directory symlinks (merged /usr)
  const canon = new CanonicalPaths(fs);
  const expected = new Map<string, string[]>();
  for (const p of db.packages) {
    for (const [path, md5] of p.md5) {
      if (!db.owners.get(path)?.includes(p.listName)) continue;
      const at = await canon.of(path);
      if (at !== undefined) (expected.get(at) ?? expected.set(at, []).get(at)!).push(md5);
    }
  }
  const out: PackageBytes = { packages: { files: 0, bytes: 0 }, modified: { files: 0, bytes: 0 }, own: { files: 0, bytes: 0 } };
  const seen = new Set<number>();
  const add = (k: keyof PackageBytes, n: number) => {
    out[k].files++;
    out[k].bytes += n;
  };
  for await (const { pathBytes, node } of walkFs(fs)) {
    signal?.throwIfAborted();
    if (node.type !== 'file' || seen.has(node.ino)) continue;
    if (node.nlink > 1) seen.add(node.ino);
    const md5s = expected.get(Buffer.from(pathBytes.subarray(1)).toString('latin1'));
    if (!md5s || node.size === 0) add('own', node.size);
    else if (knows(fs) && fs.fromPackage(node)) add('packages', node.size);
    else add(md5s.includes(await md5Of(fs, node, signal)) ? 'packages' : 'modified', node.size);
  }
  return out;
}
