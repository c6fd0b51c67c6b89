/** Reference-tool checks on whole disk images: sfdisk dumps, e2fsck on a partition. */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { sh } from './cli.js';

/** `sfdisk --dump` without the lines that name the file. */
export function sfdiskDump(image: string): string {
  return sh('sfdisk', ['--dump', image]).split('\n').filter((l) => !l.startsWith('device:')).map((l) => l.replaceAll(image, 'IMG')).join('\n');
}

/**
 * e2fsck -fn on the partition at `offset`, in place (`IMAGE?offset=N`, e2fsprogs' unix I/O
 * option): copying the partition out with dd first read the whole 3 GiB of a corpus export
 * (17 s under load, per check). In place e2fsck would see everything after `offset` as its
 * device, so the one bound the copy gave -- the filesystem ends inside the partition -- is
 * checked here from the superblock (s_blocks_count, s_log_block_size, 64bit high half).
 */
export function e2fsckPartition(image: string, offset: number, length: number, _scratch?: string): { clean: boolean; out: string } {
  const sb = Buffer.alloc(1024);
  const fd = fs.openSync(image, 'r');
  try {
    fs.readSync(fd, sb, 0, 1024, offset + 1024);
  } finally {
    fs.closeSync(fd);
  }
  if (sb.readUInt16LE(0x38) !== 0xef53) return { clean: false, out: `no ext2/3/4 superblock at ${offset + 1024}` };
  const is64 = (sb.readUInt32LE(0x60) & 0x80) !== 0; // INCOMPAT_64BIT
  const blocks = sb.readUInt32LE(0x04) + (is64 ? sb.readUInt32LE(0x150) * 2 ** 32 : 0);
  const bytes = blocks * 2 ** (10 + sb.readUInt32LE(0x18));
  if (bytes > length) return { clean: false, out: `filesystem of ${bytes} bytes exceeds its ${length}-byte partition` };
  const r = spawnSync('e2fsck', ['-fn', `${image}?offset=${offset}`], { encoding: 'utf8' });
  return { clean: r.status === 0, out: r.stdout + r.stderr };
}

/** A sparse file of `size` bytes. */
export function sparseFile(file: string, size: number): void {
  fs.closeSync(fs.openSync(file, 'w'));
  fs.truncateSync(file, size);
}
