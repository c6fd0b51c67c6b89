/**
 * Packages strategy, export side: unpack the files a tree takes from its
 * packages straight out of each package's stored data member (no maintainer
 * scripts run), into the stage at the tree's own paths. Only files the tree names
 * are written, each created exclusively without following links, so a
 * package can neither add nor redirect anything.
 */
import fs from 'node:fs';
import type { ReadableStore } from '../../store/types.js';
import { readTar } from '../../os/deb.js';
import { storedTar } from './ingredients.js';
import { type PackageRef } from '../../model/package-ref.js';
import { pathKey, type TreeRecord } from '../../model/files-tree.js';
import type { FileSystem } from '../../fs/types.js';
import { CanonicalPaths } from '../../os/canonical-path.js';
import { VmdnError } from '../../errors.js';
import { writeAt } from '../files/stage-write.js';

/** Chunks decode in the store's workers while the tar is parsed here: two packages keep both busy. */
const PARALLEL_PACKAGES = 2;

/** Files up to this size are written with synchronous calls: thousands of small files are syscall-bound. */
const SMALL = 256 << 10;

/** `create` makes the file (exclusively, not following links) and returns its descriptor. */
async function writeSmall(create: () => number, r: TreeRecord, body: AsyncIterable<Buffer>): Promise<void> {
  const parts: Buffer[] = [];
  for await (const b of body) parts.push(b);
  const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  const fd = create();
  try {
    fs.writeSync(fd, data, 0, data.length, 0);
    fs.fchownSync(fd, r.uid, r.gid);
    fs.fchmodSync(fd, r.perm); // after chown, which clears setuid bits
  } finally {
    fs.closeSync(fd);
  }
}

async function writeLarge(create: () => number, r: TreeRecord, body: AsyncIterable<Buffer>): Promise<void> {
  const fd = create();
  try {
    let pos = 0;
    for await (const b of body) {
      await writeAt(fd, b, b.length, pos);
      pos += b.length;
    }
    fs.fchownSync(fd, r.uid, r.gid);
    fs.fchmodSync(fd, r.perm); // after chown, which clears setuid bits
  } finally {
    fs.closeSync(fd);
  }
}

export interface PackageStageOptions {
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
}

/**
 * `create(i)`: make record i's file in the stage (exclusively, not following
 * links) and return its descriptor. `tree`: the recorded tree as a filesystem, to place package paths as import
 * matched them (through the image's directory symlinks: merged /usr).
 */
export async function stagePackageFiles(records: TreeRecord[], create: (i: number) => number, packages: PackageRef[], tree: FileSystem, store: ReadableStore, opts: PackageStageOptions = {}): Promise<void> {
  const canon = new CanonicalPaths(tree);
  const byPkg = new Map<number, Map<string, number>>();
  records.forEach((r, i) => {
    if (r.pkg === undefined || r.link !== undefined) return;
    (byPkg.get(r.pkg) ?? byPkg.set(r.pkg, new Map()).get(r.pkg)!).set(pathKey(r.path), i);
  });
  const todo = [...byPkg];
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const [k, want] = todo[next++]!;
      const ref = packages[k]!;
      for await (const e of readTar(storedTar(ref, store, opts.signal), `${ref.name} ${ref.version}`)) {
        if (e.type !== 'file') continue;
        const where = await canon.of(e.path);
        const i = where === undefined ? undefined : want.get(where);
        if (i === undefined) continue;
        want.delete(where!);
        const r = records[i]!;
        if (e.size !== r.size) throw new VmdnError('E_MANIFEST', `${ref.name} ${ref.version}: ${e.path} is ${e.size} bytes in the package, the tree says ${r.size}`, { package: ref.name, path: e.path });
        if (e.size <= SMALL) await writeSmall(() => create(i), r, e.body);
        else await writeLarge(() => create(i), r, e.body);
        opts.onBytes?.(e.size);
      }
      if (want.size) {
        const first = [...want.keys()][0]!;
        throw new VmdnError('E_MANIFEST', `${ref.name} ${ref.version} has no file ${Buffer.from(first, 'latin1').toString()} (and ${want.size - 1} more the tree takes from it)`, { package: ref.name });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL_PACKAGES, todo.length) }, worker));
}

/**
 * One file of a stored package (cat/diff on a stored image): the package's
 * tar is read up to that member. Fine per file; exports unpack each package once.
 */
export async function readPackageFile(ref: PackageRef, where: string, tree: FileSystem, store: ReadableStore, signal?: AbortSignal): Promise<Buffer> {
  const canon = new CanonicalPaths(tree);
  for await (const e of readTar(storedTar(ref, store, signal), `${ref.name} ${ref.version}`)) {
    if (e.type !== 'file' || (await canon.of(e.path)) !== where) continue;
    const parts: Buffer[] = [];
    for await (const b of e.body) parts.push(b);
    return Buffer.concat(parts);
  }
  throw new VmdnError('E_MANIFEST', `${ref.name} ${ref.version} has no file ${Buffer.from(where, 'latin1').toString()}`, { package: ref.name });
}
