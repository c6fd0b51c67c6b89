/**
 * The kernel and initrd a disk boots with, found inside its filesystems the
 * way `vmdn cat` reads a path (fs/volumes + os/fs-read: symlinks are followed
 * inside the image, an absolute target restarts at the image's root and '..'
 * stops there, so no link reaches the host), and copied to files for qemu's
 * direct kernel boot. Images have no boot loader to ask; what Debian, Ubuntu
 * and Fedora install is looked for: /boot/vmlinuz-VERSION beside
 * initrd.img-VERSION (or initramfs-VERSION.img), the newest VERSION first,
 * else the /vmlinuz and /initrd.img links; on the root filesystem (the one
 * with an os-release), then at the top of the others (a separate /boot).
 */
import fs from 'node:fs';
import type { Disk } from '../container/disk.js';
import type { FileSystem, FsNode } from '../fs/types.js';
import { listVolumes, pickVolume, type Volume } from '../fs/volumes.js';
import { resolvePath } from '../os/fs-read.js';
import { VmdnError, asVmdnError, check } from '../errors.js';

export interface BootFile {
  /** Partition number of its filesystem (0: the whole disk). */
  partition: number;
  /** The path it was found by, inside that filesystem. */
  path: string;
  size: number;
  node: FsNode;
  fs: FileSystem;
}

export interface BootFiles {
  kernel: BootFile;
  initrd?: BootFile;
  version?: string;
  /** Partition number of the root filesystem (root=/dev/vdaN); 0: a filesystem on the whole disk. */
  rootPartition: number;
}

/** Bounds on what is copied out of an untrusted image. */
export const MAX_KERNEL = 256 << 20;
export const MAX_INITRD = 2 ** 31;

const VERSIONED = /^vmlinuz-(.+)$/;
const initrdNames = (v: string) => [`initrd.img-${v}`, `initramfs-${v}.img`, `initrd-${v}.img`, `initrd-${v}`];
export const LOOKED_FOR = '/boot/vmlinuz-VERSION (with initrd.img-VERSION or initramfs-VERSION.img), /vmlinuz, /boot/vmlinuz, and vmlinuz-VERSION at the top of other filesystems';

/** `sort -V` order: digit runs compare as numbers, the rest as text. */
export function compareVersions(a: string, b: string): number {
  const pa = a.match(/\d+|\D+/g) ?? [];
  const pb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i], y = pb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d/.test(x), ny = /^\d/.test(y);
    if (nx && ny) {
      const d = Number(x) - Number(y);
      if (d) return d;
    } else if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** The regular file `path` leads to inside the image, or undefined (missing, a directory, a dangling or looping link). */
async function fileAt(fs: FileSystem, partition: number, path: string): Promise<BootFile | undefined> {
  try {
    const node = await resolvePath(fs, path);
    return node.type === 'file' ? { partition, path, size: node.size, node, fs } : undefined;
  } catch (err) {
    const e = asVmdnError(err);
    if (e.code === 'E_NOT_FOUND' || e.code === 'E_FORMAT') return undefined;
    throw err;
  }
}

async function namesIn(fs: FileSystem, dir: string): Promise<string[]> {
  try {
    const node = await resolvePath(fs, dir);
    if (node.type !== 'dir') return [];
    return (await fs.readdir(node)).map((e) => Buffer.from(e.nameBytes).toString('utf8')).filter((n) => !n.includes('/'));
  } catch (err) {
    if (asVmdnError(err).code === 'E_NOT_FOUND') return [];
    throw err;
  }
}

/** The newest versioned kernel in `dir` with its initrd, else the unversioned links. */
async function findIn(fs: FileSystem, partition: number, dir: string, links: boolean): Promise<Omit<BootFiles, 'rootPartition'> | undefined> {
  const prefix = dir === '/' ? '/' : `${dir}/`;
  const names = await namesIn(fs, dir);
  const versions = names.map((n) => VERSIONED.exec(n)?.[1]).filter((v): v is string => !!v && !/\.(old|bak|sig|efi\.signed)$/.test(v));
  for (const version of versions.sort(compareVersions).reverse()) {
    const kernel = await fileAt(fs, partition, prefix + `vmlinuz-${version}`);
    if (!kernel) continue;
    let initrd: BootFile | undefined;
    for (const n of initrdNames(version)) if ((initrd = await fileAt(fs, partition, prefix + n))) break;
    return { kernel, initrd, version };
  }
  if (!links) return undefined;
  for (const [k, i] of [['/vmlinuz', '/initrd.img'], ['/boot/vmlinuz', '/boot/initrd.img']] as const) {
    const kernel = await fileAt(fs, partition, k);
    if (kernel) return { kernel, initrd: await fileAt(fs, partition, i) };
  }
  return undefined;
}

/** Find the kernel, its initrd and the root partition; E_UNSUPPORTED (saying what was looked for) if there is no kernel. */
export async function findBootFiles(disk: Disk): Promise<BootFiles> {
  const volumes = await listVolumes(disk);
  const readable = volumes.volumes.filter((v): v is Volume & { fs: FileSystem } => !!v.fs);
  if (!readable.length) throw new VmdnError('E_UNSUPPORTED', `no readable filesystem on this disk, so no kernel to boot (looked for ${LOOKED_FOR})`, { lookedFor: LOOKED_FOR });
  const root = await pickVolume(volumes);
  const found = (await findIn(root.fs, root.index, '/boot', true))
    ?? await (async () => {
      for (const v of readable) if (v !== root) {
        const f = await findIn(v.fs, v.index, '/', false) ?? await findIn(v.fs, v.index, '/boot', true);
        if (f) return f;
      }
      return undefined;
    })();
  if (!found) {
    const where = readable.map((v) => `${v.index} (${v.kind})`).join(', ');
    throw new VmdnError('E_UNSUPPORTED', `no kernel in this image: looked for ${LOOKED_FOR} on filesystem${readable.length > 1 ? 's' : ''} ${where}`, { lookedFor: LOOKED_FOR });
  }
  return { ...found, rootPartition: root.index };
}

/** Copy a file out of the image to `dest` (created 0600, never over an existing file), at most `max` bytes. */
export async function copyOut(f: BootFile, dest: string, max: number, signal?: AbortSignal): Promise<number> {
  check(f.size <= max, 'E_UNSUPPORTED', `${f.path} is ${f.size} bytes, over the ${max}-byte limit for a boot file`, { path: f.path });
  const fd = fs.openSync(dest, 'wx', 0o600);
  let n = 0;
  try {
    for await (const b of f.fs.readFile(f.node, signal)) {
      n += b.length;
      check(n <= f.size, 'E_FORMAT', `${f.path} is longer than its size says`, { path: f.path });
      for (let at = 0; at < b.length; ) at += fs.writeSync(fd, b, at);
    }
  } finally {
    fs.closeSync(fd);
  }
  return n;
}
