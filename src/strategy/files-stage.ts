/**
 * Stage a recorded file tree in a host directory, for `mke2fs -d`. The tree
 * is untrusted data: every path was checked by decodeTree (no '..', no empty
 * or '.' component, parents are earlier directories), entries are created
 * only with exclusive, non-following calls inside directories made here, so
 * nothing is ever written outside the stage. Times are not set here: the
 * inode patcher puts them back, nanoseconds included, after mke2fs.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { ReadableStore } from '../store/types.js';
import type { TreeRecord } from './files-tree.js';
import { VmdnError } from '../errors.js';

const WRITE_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
const PARALLEL_FILES = 8;

export interface StageOptions {
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
}

export async function stageTree(records: TreeRecord[], stage: string, store: ReadableStore, opts: StageOptions = {}): Promise<void> {
  const root = Buffer.from(stage);
  const at = (r: TreeRecord): Buffer => (r.path.length ? Buffer.concat([root, Buffer.from('/'), r.path]) : root);
  // 1. directories, in order (parents first)
  for (const r of records) if (r.type === 'dir' && r.path.length) await fsp.mkdir(at(r));
  // 2. file contents, a few at a time (each file's chunks are fetched in order)
  const files = records.filter((r) => r.type === 'file' && r.link === undefined);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      opts.signal?.throwIfAborted();
      const r = files[next++]!;
      await writeFile(at(r), r, store, opts);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL_FILES }, worker));
  // 3. links, special files
  let special = 0;
  for (const r of records) {
    const p = at(r);
    if (r.type === 'file' && r.link !== undefined) await fsp.link(at(records[r.link]!), p);
    else if (r.type === 'symlink') await fsp.symlink(Buffer.from(r.target!), p);
    else if (r.type === 'fifo' || r.type === 'chardev' || r.type === 'blockdev') {
      // mknod takes string arguments: make it under a plain name, then rename to the raw path
      const tmp = path.join(stage, `.vmdn-special-${special++}`);
      const args = r.type === 'fifo' ? [tmp, 'p'] : [tmp, r.type === 'chardev' ? 'c' : 'b', String(r.rdev![0]), String(r.rdev![1])];
      const res = spawnSync('mknod', args, { encoding: 'utf8' });
      if (res.status !== 0) throw new VmdnError('E_IO', `mknod failed for ${Buffer.from(r.path).toString()}: ${res.stderr || res.error?.message}`);
      await fsp.rename(tmp, p);
    } else if (r.type === 'socket') {
      throw new VmdnError('E_UNSUPPORTED', `sockets cannot be staged (${Buffer.from(r.path).toString()})`);
    }
  }
  // 4. owners and modes, deepest first so a read-only directory is locked last
  for (let i = records.length - 1; i >= 0; i--) {
    const r = records[i]!;
    const p = at(r);
    await fsp.lchown(p, r.uid, r.gid);
    if (r.type !== 'symlink') await fsp.chmod(p, r.perm);
  }
  await setXattrs(records, stage);
}

async function writeFile(p: Buffer, r: TreeRecord, store: ReadableStore, opts: StageOptions): Promise<void> {
  const h = await fsp.open(p, WRITE_FLAGS, 0o600);
  try {
    for (const [off, len, digest] of r.chunks!) {
      const data = await store.get(digest, { signal: opts.signal });
      if (data.length !== len) throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${data.length} bytes, the tree says ${len}`, { digest });
      await h.write(data, 0, len, off);
      opts.onBytes?.(len);
    }
    await h.truncate(r.size!);
  } finally {
    await h.close();
  }
}

/** `setfattr --restore` escapes: every byte outside printable ASCII, and the backslash, as \ooo. */
function quote(b: Uint8Array): string {
  let s = '';
  for (const c of b) s += c > 0x20 && c < 0x7f && c !== 0x5c && c !== 0x3d ? String.fromCharCode(c) : `\\${c.toString(8).padStart(3, '0')}`;
  return s;
}

/** All xattrs in one setfattr run (one process, not one per file). */
async function setXattrs(records: TreeRecord[], stage: string): Promise<void> {
  const lines: string[] = [];
  for (const r of records) {
    if (!r.xattrs?.size) continue;
    lines.push(`# file: ${r.path.length ? quote(r.path) : '.'}`);
    for (const [k, v] of r.xattrs) lines.push(`${quote(Buffer.from(k))}=0x${Buffer.from(v).toString('hex')}`);
    lines.push('');
  }
  if (!lines.length) return;
  const res = spawnSync('setfattr', ['-h', '--restore=-'], { cwd: stage, input: lines.join('\n') + '\n', encoding: 'utf8' });
  if (res.status !== 0) throw new VmdnError('E_IO', `setfattr --restore failed: ${(res.stderr || res.error?.message || '').trim()}`);
}
