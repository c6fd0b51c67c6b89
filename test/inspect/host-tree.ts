/**
 * The host side of the tree comparisons: walk a directory with lstat (never
 * following symlinks), hash file contents, read xattrs with getfattr, in the
 * same shape as the entries `vmdn ls -R --json` prints.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';

import { spawnSync } from 'node:child_process';

export interface HostEntry {
  path: string;
  type: string;
  perm: number;
  uid: number;
  gid: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  ino: number;
  nlink: number;
  target?: string;
  rdev?: { major: number; minor: number };
  sha256?: string;
  xattrs?: Record<string, string>;
}

const strict = new TextDecoder('utf-8', { fatal: true });

/** Same key vmdn uses: the decoded path, or "b64:" + the exact bytes when they are not UTF-8. */
export function keyOfBytes(rel: Buffer): string {
  try {
    return strict.decode(rel);
  } catch {
    return `b64:${rel.toString('base64')}`;
  }
}

function typeOf(st: fs.BigIntStats): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

/** Hash many files with several reads in flight: a cold tree of small files is seek-bound, not CPU-bound. */
async function hashAll(jobs: Array<{ abs: Buffer; e: HostEntry }>, parallel = 8): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const { abs, e } = jobs[next++]!;
      const h = crypto.createHash('sha256');
      const fh = await fs.promises.open(abs, 'r');
      try {
        const buf = Buffer.allocUnsafe(1 << 20);
        for (let n; (n = (await fh.read(buf, 0, buf.length, null)).bytesRead) > 0; ) h.update(buf.subarray(0, n));
      } finally {
        await fh.close();
      }
      e.sha256 = h.digest('hex');
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

/** Everything under `root` (not root itself), keyed like vmdn's entries. `hash(key)` says which files to hash. */
export async function walkHost(root: string, hash: (key: string, size: number) => boolean): Promise<Map<string, HostEntry>> {
  const jobs: Array<{ abs: Buffer; e: HostEntry }> = [];
  const out = new Map<string, HostEntry>();
  const rootB = Buffer.from(root);
  const stack: Buffer[] = [Buffer.alloc(0)];
  while (stack.length) {
    const rel = stack.pop()!;
    const names = fs.readdirSync(Buffer.concat([rootB, rel]), { encoding: 'buffer' });
    for (const name of names) {
      const r = Buffer.concat([rel, Buffer.from('/'), name]);
      const abs = Buffer.concat([rootB, r]);
      const st = fs.lstatSync(abs, { bigint: true });
      const key = keyOfBytes(r);
      const e: HostEntry = {
        path: key, type: typeOf(st), perm: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), size: Number(st.size),
        mtimeSec: Number(st.mtimeNs / 1_000_000_000n), mtimeNsec: Number(st.mtimeNs % 1_000_000_000n), ino: Number(st.ino), nlink: Number(st.nlink),
      };
      if (e.type === 'symlink') e.target = fs.readlinkSync(abs, { encoding: 'buffer' }).toString('utf8');
      if (e.type === 'chardev' || e.type === 'blockdev') {
        const d = Number(st.rdev);
        e.rdev = { major: ((d >> 8) & 0xfff) | (Math.floor(d / 2 ** 32) & ~0xfff), minor: (d & 0xff) | ((d >> 12) & 0xfff00) };
      }
      if (e.type === 'file' && hash(key, e.size)) jobs.push({ abs, e });
      out.set(key, e);
      if (e.type === 'dir') stack.push(r);
    }
  }
  await hashAll(jobs);
  return out;
}

/** getfattr's \ooo escapes back to bytes. */
function unescapeName(s: string): Buffer {
  const out: number[] = [];
  const b = Buffer.from(s, 'utf8');
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x5c && i + 3 < b.length && /^[0-7]{3}$/.test(b.subarray(i + 1, i + 4).toString())) {
      out.push(parseInt(b.subarray(i + 1, i + 4).toString(), 8));
      i += 3;
    } else out.push(b[i]!);
  }
  return Buffer.from(out);
}

export const hasGetfattr = (): boolean => spawnSync('sh', ['-c', 'command -v getfattr']).status === 0;

/** Every xattr under `root` (all namespaces, symlinks not followed), values as "0x" hex. */
export function hostXattrs(root: string): Map<string, Record<string, string>> {
  const r = spawnSync('getfattr', ['-R', '-d', '-m', '-', '-h', '--absolute-names', '-e', 'hex', root], { maxBuffer: 1 << 30 });
  const out = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  for (const line of r.stdout.toString('utf8').split('\n')) {
    if (line.startsWith('# file: ')) {
      const abs = unescapeName(line.slice('# file: '.length));
      const rel = abs.subarray(Buffer.byteLength(root));
      cur = {};
      if (rel.length) out.set(keyOfBytes(rel), cur);
      continue;
    }
    const m = /^([^=]+)=(0x[0-9a-f]*)$/.exec(line);
    if (m && cur) cur[m[1]!] = m[2]!;
  }
  return out;
}

/** Hard-link groups: sorted path lists of non-directories sharing an inode (only groups of 2+). */
export function linkGroups(entries: Iterable<{ path: string; type: string; ino: number }>): string[] {
  const by = new Map<number, string[]>();
  for (const e of entries) {
    if (e.type === 'dir') continue;
    const g = by.get(e.ino);
    if (g) g.push(e.path);
    else by.set(e.ino, [e.path]);
  }
  return [...by.values()].filter((g) => g.length > 1).map((g) => g.sort().join('\n')).sort();
}

