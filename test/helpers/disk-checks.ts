/** Reference-tool checks on whole disk images: sfdisk dumps, e2fsck on a partition. */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { sh } from './cli.js';

/** `sfdisk --dump` without the lines that name the file. */
export function sfdiskDump(image: string): string {
  return sh('sfdisk', ['--dump', image]).split('\n').filter((l) => !l.startsWith('device:')).map((l) => l.replaceAll(image, 'IMG')).join('\n');
}

/** e2fsck -fn on the partition at `offset` (copied out sparsely: e2fsck takes no offset). */
export function e2fsckPartition(image: string, offset: number, length: number, scratch: string): { clean: boolean; out: string } {
  const part = path.join(scratch, 'fsck-part.img');
  sh('dd', [`if=${image}`, `of=${part}`, 'bs=1M', `skip=${offset / 2 ** 20}`, `count=${Math.ceil(length / 2 ** 20)}`, 'conv=sparse', 'status=none']);
  const r = spawnSync('e2fsck', ['-fn', part], { encoding: 'utf8' });
  fs.rmSync(part);
  return { clean: r.status === 0, out: r.stdout + r.stderr };
}

/** A sparse file of `size` bytes. */
export function sparseFile(file: string, size: number): void {
  fs.closeSync(fs.openSync(file, 'w'));
  fs.truncateSync(file, size);
}
