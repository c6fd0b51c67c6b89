/** Source trees and mke2fs images for the ext4 reader tests (needs root for chown/mknod). */
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { prng } from '../helpers/images.js';
import { walkFs } from '../../src/fs/ext4/walk.js';
import type { FileSystem } from '../../src/fs/types.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
export const run = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 << 20 });

/** Xattrs set on the tree (name -> value per relative path), when setfattr exists. */
export const XATTRS: Record<string, Record<string, string>> = {
  'a/f1': { 'user.color': 'blue', 'trusted.t': 'x'.repeat(40) },
  'a/big-xattr': { 'user.big': 'v'.repeat(700), 'security.sec': 'label' },
  dir2: { 'user.dir': 'yes' },
};

/** A tree with every node type, odd modes/owners, links, sparse and fragmented files, a big directory. */
export function makeTree(root: string, opts: { bigDir?: number; fragmented?: boolean } = {}): void {
  const p = (...x: string[]): string => path.join(root, ...x);
  fs.mkdirSync(p('a', 'b', 'c'), { recursive: true });
  fs.mkdirSync(p('dir2'));
  fs.mkdirSync(p('empty'));
  for (const n of [0, 1, 59, 60, 61, 100, 4095, 4096, 4097, 70000]) fs.writeFileSync(p('a', `size-${n}`), prng(n + 1, n));
  fs.writeFileSync(p('a', 'f1'), 'hello ext4\n');
  fs.writeFileSync(p('a', 'big-xattr'), 'has a big xattr\n');
  fs.writeFileSync(p('a', 'b', 'c', 'random'), prng(7, 3 * MiB + 123));
  fs.writeFileSync(p('a', 'b', 'hard1'), 'linked\n');
  fs.linkSync(p('a', 'b', 'hard1'), p('dir2', 'hard2'));
  fs.linkSync(p('a', 'b', 'hard1'), p('hard3'));
  fs.symlinkSync('a/f1', p('fast-link'));
  fs.symlinkSync('/' + 'long-target/'.repeat(20) + 'end', p('slow-link'));
  fs.symlinkSync('../../outside/of/image', p('a', 'dotdot-link'));
  fs.writeFileSync(Buffer.concat([Buffer.from(root + '/bad-'), Buffer.from([0xff, 0xfe, 0x41])]), 'non-utf8 name\n');
  fs.writeFileSync(p('ünïcødé ✓'), 'unicode\n');
  // Sparse: data islands in a 40 MiB file.
  const fd = fs.openSync(p('sparse'), 'w');
  fs.ftruncateSync(fd, 40 * MiB);
  fs.writeSync(fd, prng(11, 10000), 0, 10000, 5 * MiB + 17);
  fs.writeSync(fd, prng(12, 5000), 0, 5000, 40 * MiB - 5000);
  fs.closeSync(fd);
  if (opts.fragmented) {
    // Every other 4 KiB block of 64 MiB written: 8192 extents, a depth-2 extent tree.
    const fr = fs.openSync(p('fragmented'), 'w');
    fs.ftruncateSync(fr, 64 * MiB);
    const blk = prng(13, 4096);
    for (let i = 0; i < 8192; i++) {
      blk.writeUInt32LE(i, 0);
      fs.writeSync(fr, blk, 0, 4096, i * 8192 + 4096); // ends in data: mke2fs -O inline_data gets a trailing hole's size wrong
    }
    fs.closeSync(fr);
  }
  if (opts.bigDir) {
    fs.mkdirSync(p('many'));
    for (let i = 0; i < opts.bigDir; i++) fs.writeFileSync(p('many', `entry-with-a-longish-name-${String(i).padStart(6, '0')}`), String(i));
  }
  // Owners and special modes.
  fs.chownSync(p('a', 'f1'), 1234, 5678);
  fs.chownSync(p('dir2'), 70000, 80000); // needs the high 16 bits
  fs.chmodSync(p('a', 'size-100'), 0o4755);
  fs.chmodSync(p('empty'), 0o1777);
  fs.chmodSync(p('a', 'size-59'), 0o2640);
  fs.chmodSync(p('a', 'size-0'), 0o000);
  fs.utimesSync(p('a', 'size-61'), new Date('2001-02-03T04:05:06Z'), new Date('2020-01-02T03:04:05.123Z'));
  fs.utimesSync(p('a', 'size-1'), 4000000000, 4000000000); // past 2038: epoch bits
  // Device nodes, FIFO, socket.
  run('mknod', [p('chr'), 'c', '1', '3']);
  run('mknod', [p('blk'), 'b', '8', '1']);
  run('mknod', [p('chr-big'), 'c', '300', '70000']); // new (12:20) encoding
  run('mkfifo', [p('fifo')]);
  spawnSync('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(p('sock'))})`]);
  if (has('setfattr')) {
    for (const [rel, xs] of Object.entries(XATTRS)) for (const [k, v] of Object.entries(xs)) run('setfattr', ['-h', '-n', k, '-v', v, p(rel)]);
  }
}

/** mke2fs -d TREE into a fresh IMG, then e2fsck -D to index large directories (htree). */
export function mkfs(img: string, tree: string, sizeMiB: number, opts: string[]): void {
  fs.rmSync(img, { force: true });
  run('mke2fs', ['-q', '-F', ...opts, '-d', tree, img, `${sizeMiB}M`]);
  const r = spawnSync('e2fsck', ['-fyD', img], { encoding: 'utf8' });
  if ((r.status ?? 8) >= 4) throw new Error(`e2fsck failed on ${img}: ${r.stdout}${r.stderr}`);
}

export function debugfs(img: string, cmd: string): string {
  return execFileSync('debugfs', ['-R', cmd, img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 256 << 20 });
}

/** A small 1 KiB-block ext4 (metadata_csum, 128-byte inodes so xattrs go to a block) and where its metadata lives. */
export interface SmallImage {
  bytes: Buffer;
  bs: number;
  inodeTable: [number, number];
  /** Byte offsets of inodes, by path. */
  inodeAt: (p: string) => number;
  fragEtb: number;
  dirABlock: number;
  xattrBlock: number;
}

export function smallImage(dir: string): SmallImage {
  const src = path.join(dir, 'small-src');
  fs.rmSync(src, { recursive: true, force: true });
  fs.mkdirSync(path.join(src, 'a', 'sub'), { recursive: true });
  const fd = fs.openSync(path.join(src, 'a', 'frag'), 'w');
  for (let i = 0; i < 20; i++) fs.writeSync(fd, prng(i + 1, 1024), 0, 1024, i * 2048); // 20 extents: depth 1
  fs.closeSync(fd);
  fs.writeFileSync(path.join(src, 'a', 'f'), 'small file\n');
  fs.writeFileSync(path.join(src, 'a', 'sub', 'g'), prng(99, 5000));
  fs.symlinkSync('f', path.join(src, 'a', 'link'));
  fs.symlinkSync('x'.repeat(100), path.join(src, 'a', 'slow-link'));
  if (has('setfattr')) run('setfattr', ['-n', 'user.k', '-v', 'v'.repeat(300), path.join(src, 'a', 'f')]);
  const img = path.join(dir, 'small.img');
  fs.rmSync(img, { force: true });
  run('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '1024', '-I', '128', '-d', src, img, '2M']);
  const bs = 1024;
  const imap = (p: string): number => {
    const m = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(debugfs(img, `imap ${p}`))!;
    return Number(m[1]) * bs + parseInt(m[2], 16);
  };
  const it = /Inode table at (\d+)-(\d+)/.exec(run('dumpe2fs', [img]))!;
  const etb = /\(ETB0\):(\d+)/.exec(debugfs(img, 'stat /a/frag'))!;
  const acl = /File ACL: (\d+)/.exec(debugfs(img, 'stat /a/f'))!;
  return {
    bytes: fs.readFileSync(img),
    bs,
    inodeTable: [Number(it[1]), Number(it[2])],
    inodeAt: imap,
    fragEtb: Number(etb[1]),
    dirABlock: Number(debugfs(img, 'blocks /a').trim().split(/\s+/)[0]),
    xattrBlock: Number(acl[1]),
  };
}

/** An in-memory Disk over a buffer (mutated copies for bad-input and fuzz tests). */
export function memDisk(bytes: Buffer): import('../../src/container/disk.js').Disk {
  return {
    format: 'mem',
    virtualSize: bytes.length,
    clusterSize: 4096,
    async *extents() {
      yield { offset: 0, length: bytes.length, kind: 'data' as const };
    },
    async read(offset: number, length: number) {
      if (offset < 0 || length < 0 || offset + length > bytes.length) throw new Error(`memDisk: read out of range ${offset}+${length}`);
      return bytes.subarray(offset, offset + length);
    },
    async close() {},
  };
}

/** Everything a reader user might do: walk, read all files, links, xattrs, extents, used ranges. */
export async function exercise(fs: FileSystem, maxBytes = 64 << 20): Promise<void> {
  for await (const { node } of walkFs(fs)) {
    if (node.type === 'file') {
      let n = 0;
      for await (const b of fs.readFile(node)) if ((n += b.length) > maxBytes) break;
      await fs.fileExtents(node);
    }
    if (node.type === 'symlink') await fs.readlink(node);
    await fs.xattrs(node);
  }
  await fs.usedRanges();
}
