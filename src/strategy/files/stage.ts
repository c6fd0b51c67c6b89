/**
 * Stage a recorded file tree in a host directory, for `mke2fs -d`. The tree
 * is untrusted data: every path was checked by decodeTree (no '..', no empty
 * or '.' component, parents are earlier directories), entries are created
 * only with exclusive, non-following calls inside directories made here, in
 * a stage no other user can enter (stage-dir.ts), so nothing is ever written
 * outside the stage nor reachable by anyone else while staged. Times are not
 * set here: the inode patcher puts them back, nanoseconds included, after mke2fs.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { canCopyToFile, type ReadableStore } from '../../store/types.js';
import { baseName, childrenOf, pathKey, type TreeRecord } from '../../model/files-tree.js';
import type { ChunkEntry } from '../../model/manifest.js';
import { StreamReader } from '../stream-chunks.js';
import { VmdnError } from '../../errors.js';
import { dirBlockCount } from '../../fs/ext4/bigdir.js';
import type { PackageRef } from '../../model/package-ref.js';
import type { FileSystem } from '../../fs/types.js';
import { stagePackageFiles } from '../packages/stage.js';
import { StagePaths, type Stage } from './stage-dir.js';
import { standIn, writeFile, writeFileDirect } from './stage-write.js';

const WRITE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
const PARALLEL_FILES = 8;

export interface StageOptions {
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
  /** Packages strategy: what tree entries with `pkg` are unpacked from, and where .debs are put meanwhile. */
  packages?: PackageRef[];
  /** The recorded tree as a filesystem (package paths are resolved through its symlinks). */
  tree?: FileSystem;
  workDir?: string;
  /** Record indices of files staged as sparse stand-ins (size only): their content goes into the image later (files-direct). */
  sizeOnly?: Set<number>;
}

/** A directory with more non-directory entries than this is built by ext4-bigdir instead of mke2fs. */
export const BIG_DIR = 3000;
/** Entries a big directory keeps in the stage itself (so it never is an inline directory). */
const KEPT_DIRECT = 64;
const HOLD_FANOUT = 1000;

export interface BigDirPlan {
  /** Record index of the directory. */
  dir: number;
  /** Names at the stage root: the holding directory and the reserve file. */
  hold: string;
  reserve: string;
  reserveBytes: number;
  /** Children record indices, in the order the directory is written. */
  children: number[];
  /** Holding subdirectory of each parked child (by record index). */
  parked: Map<number, number>;
  holdDirs: number;
}

export interface StagePlan {
  /** Each record's path in the stage, relative to its root (empty for the root). */
  where: Buffer[];
  bigDirs: BigDirPlan[];
}

export function planStage(records: TreeRecord[], blockSize: number, csum: boolean): StagePlan {
  const children = childrenOf(records);
  const where = records.map((r) => Buffer.from(r.path));
  const rootNames = new Set((children.get(0) ?? []).map((i) => pathKey(records[i]!.path)));
  const fresh = (base: string) => {
    let n = base;
    for (let k = 0; rootNames.has(n); k++) n = `${base}-${k}`;
    rootNames.add(n);
    return n;
  };
  const bigDirs: BigDirPlan[] = [];
  for (const [dir, kids] of children) {
    const files = kids.filter((i) => records[i]!.type !== 'dir');
    if (files.length <= BIG_DIR) continue;
    const plan: BigDirPlan = { dir, hold: fresh(`.vmdn-hold-${bigDirs.length}`), reserve: fresh(`.vmdn-reserve-${bigDirs.length}`), reserveBytes: 0, children: kids, parked: new Map(), holdDirs: 0 };
    files.slice(KEPT_DIRECT).forEach((i, n) => {
      const sub = Math.floor(n / HOLD_FANOUT);
      plan.parked.set(i, sub);
      const name = baseName(records[i]!.path);
      where[i] = Buffer.concat([Buffer.from(`${plan.hold}/${sub}/`), name]);
      plan.holdDirs = sub + 1;
    });
    const nameLens = [1, 2, ...kids.map((i) => baseName(records[i]!.path).length)];
    plan.reserveBytes = dirBlockCount(nameLens, blockSize, csum) * blockSize;
    bigDirs.push(plan);
  }
  return { where, bigDirs };
}

/**
 * Where to stage: tmpfs when the tree fits comfortably in memory (creating
 * tens of thousands of files on a disk filesystem is metadata-bound: 20x
 * slower here), else `fallback`. VMDN_STAGE_DIR overrides.
 */
export function stageParent(bytes: number, fallback: string): string {
  if (process.env.VMDN_STAGE_DIR) return process.env.VMDN_STAGE_DIR;
  const shm = '/dev/shm';
  try {
    const st = fs.statfsSync(shm);
    const need = bytes * 1.1 + (64 << 20);
    if (st.bavail * st.bsize < need || os.freemem() < 2 * need) return fallback;
    // user.* xattrs on tmpfs need Linux 6.6+: probe, since staging must keep them
    // (in a directory of our own: a fixed name in /dev/shm could be another user's symlink)
    const dir = fs.mkdtempSync(path.join(shm, 'vmdn-xattr-probe-'));
    try {
      const probe = path.join(dir, 'probe');
      fs.writeFileSync(probe, '', { flag: 'wx' });
      const r = spawnSync('setfattr', ['-n', 'user.vmdn', '-v', '1', probe]);
      return r.status === 0 ? shm : fallback;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  } catch {
    return fallback;
  }
}

export async function stageTree(records: TreeRecord[], plan: StagePlan, stage: Stage, store: ReadableStore, stream: ChunkEntry[], opts: StageOptions = {}): Promise<void> {
  const paths = new StagePaths(stage.root);
  try {
    await stageIn(records, plan, stage, paths, store, stream, opts);
  } finally {
    paths.close();
  }
}

/**
 * `at(i)`: record i's path in the stage, short enough for one syscall however
 * deep the tree. It is used at once, in synchronous calls, and `paths.trim()`
 * runs only where no such path is pending (StagePaths says why).
 */
async function stageIn(records: TreeRecord[], plan: StagePlan, stage: Stage, paths: StagePaths, store: ReadableStore, stream: ChunkEntry[], opts: StageOptions): Promise<void> {
  const at = (i: number): Buffer => paths.of(plan.where[i]!);
  const create = (i: number): number => {
    paths.trim();
    return fs.openSync(at(i), WRITE_FLAGS, 0o600);
  };
  // 1. directories, in order (parents first), and the big directories' holding places
  for (const [i, r] of records.entries()) {
    if (r.type !== 'dir' || i === 0) continue;
    paths.trim();
    fs.mkdirSync(at(i));
  }
  for (const b of plan.bigDirs) {
    for (let k = 0; k < b.holdDirs; k++) fs.mkdirSync(path.join(stage.root, b.hold, String(k)), { recursive: true });
    // non-zero, so mke2fs allocates every block (a sparse file would get none)
    await fsp.writeFile(path.join(stage.root, b.reserve), Buffer.alloc(b.reserveBytes, 0xff), { flag: 'wx' });
  }
  // 2. contents: small files from the stream, in order, then the others a few at a time.
  // Small per-file work uses synchronous calls: thousands of tiny files are syscall-bound.
  const small = new StreamReader(stream, store, opts.signal);
  const smallFiles = async () => {
    for (const [i, r] of records.entries()) {
      if (r.type !== 'file' || r.streamOffset === undefined) continue;
      opts.signal?.throwIfAborted();
      const data = r.size ? await small.read(r.streamOffset, r.size!) : undefined;
      const fd = create(i);
      try {
        if (data) fs.writeSync(fd, data, 0, data.length, 0);
        fs.fchownSync(fd, r.uid, r.gid);
        fs.fchmodSync(fd, r.perm); // after chown, which clears setuid bits
      } finally {
        fs.closeSync(fd);
      }
      opts.onBytes?.(r.size!);
    }
  };
  const files = records.map((r, i) => [r, i] as const).filter(([r]) => r.type === 'file' && r.link === undefined && r.streamOffset === undefined && r.pkg === undefined);
  let next = 0;
  const direct = canCopyToFile(store) ? store : undefined;
  const worker = async () => {
    while (next < files.length) {
      opts.signal?.throwIfAborted();
      const [r, i] = files[next++]!;
      // opened here, synchronously: the path is used before anything else runs
      const fd = create(i);
      if (opts.sizeOnly?.has(i)) {
        standIn(fd, r);
        continue;
      }
      await (direct ? writeFileDirect(fd, r, direct, opts) : writeFile(fd, r, store, opts));
    }
  };
  // together: with the store's workers writing big files' content, this thread is free for the small ones
  if (direct) await Promise.all([smallFiles(), ...Array.from({ length: PARALLEL_FILES }, worker)]);
  else {
    // one after the other: run together they contend for the store's workers and the event loop
    await smallFiles();
    await Promise.all(Array.from({ length: PARALLEL_FILES }, worker));
  }
  if (records.some((r) => r.pkg !== undefined)) {
    if (!opts.packages || !opts.tree) throw new VmdnError('E_INTERNAL', 'tree takes files from packages but none were given');
    await stagePackageFiles(records, create, opts.packages, opts.tree, store, opts);
  }
  // 3. links, special files
  let special = 0;
  for (const [i, r] of records.entries()) {
    if (r.type === 'dir' || (r.type === 'file' && r.link === undefined)) continue;
    paths.trim();
    const p = at(i);
    if (r.type === 'file') fs.linkSync(at(r.link!), p);
    else if (r.type === 'symlink') {
      fs.symlinkSync(Buffer.from(r.target!), p);
      fs.lchownSync(p, r.uid, r.gid);
    } else if (r.type === 'fifo' || r.type === 'chardev' || r.type === 'blockdev') {
      // mknod takes string arguments: make it under a plain name beside the tree (outside the
      // image's namespace), then rename it to the raw path
      const tmp = path.join(stage.dir, `special-${special++}`);
      const args = r.type === 'fifo' ? [tmp, 'p'] : [tmp, r.type === 'chardev' ? 'c' : 'b', String(r.rdev![0]), String(r.rdev![1])];
      const res = spawnSync('mknod', args, { encoding: 'utf8' });
      if (res.status !== 0) throw new VmdnError('E_IO', `mknod failed for ${Buffer.from(r.path).toString()}: ${res.stderr || res.error?.message}`);
      fs.renameSync(tmp, p);
      fs.lchownSync(p, r.uid, r.gid);
      fs.chmodSync(p, r.perm);
    } else if (r.type === 'socket') {
      throw new VmdnError('E_UNSUPPORTED', `sockets cannot be staged (${Buffer.from(r.path).toString()})`);
    }
  }
  // 4. directories' owners and modes, deepest first so a read-only directory is locked last
  // (the root's too: stage.root is the image's, stage.dir around it stays private)
  for (let i = records.length - 1; i >= 0; i--) {
    const r = records[i]!;
    if (r.type !== 'dir') continue;
    paths.trim();
    const p = at(i);
    fs.lchownSync(p, r.uid, r.gid);
    fs.chmodSync(p, r.perm);
  }
  setXattrs(records, plan.where, paths);
}

/** `setfattr --restore` escapes: every byte outside printable ASCII, and the backslash, as \ooo. */
function quote(b: Uint8Array): string {
  let s = '';
  for (const c of b) s += c > 0x20 && c < 0x7f && c !== 0x5c && c !== 0x3d ? String.fromCharCode(c) : `\\${c.toString(8).padStart(3, '0')}`;
  return s;
}

/**
 * All xattrs in one setfattr run (one process, not one per file; a few for a
 * deep tree, so the directory handles its paths name stay few and open).
 * `-h`: a symlink's own xattrs; every directory above is one made here.
 */
function setXattrs(records: TreeRecord[], where: Buffer[], paths: StagePaths): void {
  let lines: string[] = [];
  const flush = () => {
    if (!lines.length) return;
    const res = spawnSync('setfattr', ['-h', '--restore=-'], { input: lines.join('\n') + '\n', encoding: 'utf8' });
    if (res.status !== 0) throw new VmdnError('E_IO', `setfattr --restore failed: ${(res.stderr || res.error?.message || '').trim()}`);
    lines = [];
  };
  for (const [i, r] of records.entries()) {
    if (!r.xattrs?.size) continue;
    if (paths.crowded) {
      flush();
      paths.trim();
    }
    lines.push(`# file: ${quote(paths.of(where[i]!))}`);
    for (const [k, v] of r.xattrs) lines.push(`${quote(Buffer.from(k))}=0x${Buffer.from(v).toString('hex')}`);
    lines.push('');
  }
  flush();
}
