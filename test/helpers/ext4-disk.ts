/** A GPT disk with one ext4 partition made by `mke2fs -d` from a host tree (for files-strategy tests). */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { sh } from './cli.js';
import { sparseFile } from './disk-checks.js';

const MiB = 2 ** 20;

export interface Ext4DiskOptions {
  sizeMiB?: number;
  /** Extra mke2fs options (before -d). */
  mke2fs?: string[];
  /** Edit the bare filesystem image before it goes on the disk. */
  patch?: (part: string) => void;
}

/** Returns the partition's place on the disk. */
export function ext4Disk(tree: string, disk: string, opts: Ext4DiskOptions = {}): { start: number; size: number } {
  const size = (opts.sizeMiB ?? 64) * MiB;
  const start = MiB;
  const part = `${disk}.part`;
  sh('mke2fs', ['-q', '-F', '-t', 'ext4', ...(opts.mke2fs ?? []), '-d', tree, part, `${size / 1024}k`]);
  opts.patch?.(part);
  sparseFile(disk, start + size + MiB);
  sh('dd', [`if=${part}`, `of=${disk}`, 'bs=1M', `seek=${start / MiB}`, 'conv=notrunc,sparse', 'status=none']);
  fs.rmSync(part);
  const r = spawnSync('sfdisk', ['-q', disk], { input: `label: gpt\nstart=${start / 512}, size=${size / 512}\n`, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sfdisk: ${r.stderr}`);
  return { start, size };
}

/** Replace the one occurrence of `from` in `file` by `to` (same length). */
export function patchBytes(file: string, from: Buffer, to: Buffer): void {
  const b = fs.readFileSync(file);
  const at = b.indexOf(from);
  if (at < 0 || b.indexOf(from, at + 1) >= 0 || from.length !== to.length) throw new Error(`patchBytes: ${from} must occur once in ${path.basename(file)}`);
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, to, 0, to.length, at);
  } finally {
    fs.closeSync(fd);
  }
}
