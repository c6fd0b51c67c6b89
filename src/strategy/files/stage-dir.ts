/**
 * Where a files/packages export lays out an image's tree for `mke2fs -d`.
 *
 * The staged tree is the image's: setuid-root binaries, world-writable
 * directories, any owner. It is built by root, often in a world-writable
 * place (/dev/shm). What makes that safe is one directory: PRIVATE, made by
 * mkdtemp (0700, ours) and never chowned or chmodded. No other user can
 * traverse it, so none can read or run a staged file, rename a staged
 * directory or plant a symlink in the tree while we build it -- every path
 * below it is then resolved only through directories this process made
 * (decodeTree guarantees each record's parent is an earlier directory
 * record, and staging creates each entry exclusively), and root's later
 * path-based calls (chown, chmod, setfattr, mknod's rename) cannot be
 * redirected. The image's tree is PRIVATE/root, the only directory that
 * takes the image root's owner and mode; helper entries sit beside it,
 * outside the image's namespace.
 *
 * PRIVATE's name carries our pid: a stage whose process is gone (SIGKILL)
 * is removed by the next export and by `vmdn gc`.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { VmdnError } from '../../errors.js';
import { pathKey } from '../../model/files-tree.js';
import { isProcessAlive } from '../../util/process.js';

const PREFIX = 'vmdn-stage-';
const STAGE_NAME = /^vmdn-stage-(\d+)-[A-Za-z0-9]+$/;
/** Paths handed to one syscall stay below this (PATH_MAX is 4096 with the NUL). */
const PATH_LIMIT = 4000;
/** Directory handles kept open at once for deep paths (more are reopened as needed). */
const MAX_ANCHORS = 64;
const SLASH = Buffer.from('/');

export interface Stage {
  /** PRIVATE: 0700, ours, never handed to the image. */
  dir: string;
  /** The tree root (`mke2fs -d` reads this). */
  root: string;
}

/** Stage parents an export may use: where stale stages are looked for. */
export function stageParents(): string[] {
  return [...new Set(['/dev/shm', ...(process.env.VMDN_STAGE_DIR ? [path.resolve(process.env.VMDN_STAGE_DIR)] : [])])];
}

export async function makeStage(parent: string): Promise<Stage> {
  const dir = await fsp.mkdtemp(path.join(parent, `${PREFIX}${process.pid}-`));
  // mkdtemp makes it 0700; check anyway: everything below relies on it
  const st = await fsp.lstat(dir);
  if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) throw new VmdnError('E_IO', `stage directory ${dir} is not private (mode ${(st.mode & 0o7777).toString(8)}, owner ${st.uid})`);
  const root = path.join(dir, 'root');
  await fsp.mkdir(root, { mode: 0o700 });
  return { dir, root };
}

/** `rm -rf` in a child process (copes with paths past PATH_MAX, never follows links); falls back to removing here. */
export async function removeTree(dir: string): Promise<void> {
  const ok = await new Promise<boolean>((resolve) => {
    const child = spawn('rm', ['-rf', '--one-file-system', '--', dir], { stdio: 'ignore' });
    child.on('error', () => resolve(false));
    child.on('close', (code) => resolve(code === 0));
  });
  if (!ok) await fsp.rm(dir, { recursive: true, force: true });
}


/**
 * Remove stages whose process is gone (only directories we own: a name
 * another user planted is not ours to delete). A reused pid keeps a stale
 * stage until that process ends too. Returns the stages removed (with
 * `dryRun`: that would be).
 */
export async function removeStaleStages(opts: { parents?: string[]; dryRun?: boolean } = {}): Promise<string[]> {
  const out: string[] = [];
  for (const parent of opts.parents ?? stageParents()) {
    let names: string[];
    try {
      names = await fsp.readdir(parent);
    } catch {
      continue;
    }
    for (const name of names) {
      const m = STAGE_NAME.exec(name);
      if (!m || isProcessAlive(Number(m[1]))) continue;
      const p = path.join(parent, name);
      const st = await fsp.lstat(p).catch(() => undefined);
      if (!st?.isDirectory() || st.uid !== process.getuid?.()) continue;
      if (!opts.dryRun) await removeTree(p);
      out.push(p);
    }
  }
  return out;
}

/**
 * Paths below a stage's root short enough for one syscall, however deep the
 * tree: past PATH_LIMIT, a path continues from an open handle on a directory
 * on the way (/proc/<pid>/fd/N: works in child processes too).
 *
 * A returned path is valid until the next `trim()`: use it in synchronous
 * calls (or a synchronous spawn) before any await, so no handle it names can
 * be closed, and its number reused, before the kernel has resolved it.
 */
export class StagePaths {
  private readonly root: Buffer;
  private readonly anchors = new Map<string, { fd: number; path: Buffer }>();

  constructor(root: string) {
    this.root = Buffer.from(root);
  }

  /** `rel`: raw path bytes below the root ('/'-joined; empty for the root itself). */
  of(rel: Uint8Array): Buffer {
    if (!rel.length) return this.root;
    let base = this.root;
    let start = 0;
    while (base.length + 1 + rel.length - start >= PATH_LIMIT) {
      // go on from the deepest directory on the way that is still in reach
      let cut = -1;
      for (let s = rel.indexOf(0x2f, start); s >= 0 && base.length + 1 + s - start < PATH_LIMIT; s = rel.indexOf(0x2f, s + 1)) cut = s;
      if (cut < 0) throw new VmdnError('E_UNSUPPORTED', `stage path too long: ${this.root.toString()}`);
      base = this.anchor(rel.subarray(0, cut), Buffer.concat([base, SLASH, rel.subarray(start, cut)]));
      start = cut + 1;
    }
    return Buffer.concat([base, SLASH, rel.subarray(start)]);
  }

  /** Many handles are open (a batch of paths that must all stay valid checks this before growing). */
  get crowded(): boolean {
    return this.anchors.size > MAX_ANCHORS;
  }

  /** Close the handles if there are many: only where no path from `of` is still to be used. */
  trim(): void {
    if (this.crowded) this.close();
  }

  close(): void {
    for (const a of this.anchors.values()) fs.closeSync(a.fd);
    this.anchors.clear();
  }

  private anchor(prefix: Uint8Array, via: Buffer): Buffer {
    const key = pathKey(prefix);
    let a = this.anchors.get(key);
    if (!a) {
      const fd = fs.openSync(via, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
      a = { fd, path: Buffer.from(`/proc/${process.pid}/fd/${fd}`) };
      this.anchors.set(key, a);
    }
    return a.path;
  }
}
