/**
 * Which filesystem is on a disk (usually a partition slice), by magic numbers
 * only, and an opened reader when we have one. Swap, XFS, btrfs and unknown
 * contents are reported, not errors; a recognised but corrupt filesystem
 * throws its reader's VmdnError.
 */
import type { Disk } from '../container/disk.js';
import type { FileSystem } from './types.js';
import { looksLikeFat } from './fat/layout.js';
import { openFat } from './fat/fat.js';

export type FsKind = 'ext2' | 'ext3' | 'ext4' | 'vfat' | 'swap' | 'xfs' | 'btrfs' | 'unknown';

export interface ProbeResult {
  kind: FsKind;
  fs?: FileSystem;
  /** Why `fs` is missing for a known kind (no reader for it). */
  note?: string;
}

async function bytesAt(disk: Disk, off: number, n: number): Promise<Uint8Array | undefined> {
  return off + n <= disk.virtualSize ? disk.read(off, n) : undefined;
}

const text = (b: Uint8Array | undefined, s: string): boolean => !!b && Buffer.from(b).toString('latin1') === s;

/** blkid's rule: ext3 = journal and only ext3-era features; anything newer is ext4. */
function extKind(sb: Uint8Array): 'ext2' | 'ext3' | 'ext4' {
  const dv = new DataView(sb.buffer, sb.byteOffset, sb.byteLength);
  const compat = dv.getUint32(0x5c, true), incompat = dv.getUint32(0x60, true), roCompat = dv.getUint32(0x64, true);
  const ext3Incompat = 0x02 | 0x04 | 0x10; // filetype, recover, meta_bg
  const ext3RoCompat = 0x01 | 0x02 | 0x04; // sparse_super, large_file, btree_dir
  if ((incompat & ~ext3Incompat) !== 0 || (roCompat & ~ext3RoCompat) !== 0) return 'ext4';
  return compat & 0x04 ? 'ext3' : 'ext2';
}

async function openExt(disk: Disk): Promise<FileSystem | undefined> {
  // Loaded lazily (and typed loosely) so this module builds and runs even without the ext reader.
  const mod = (await import('./ext4/ext4.js' as string).catch(() => undefined)) as { openExt4?: (d: Disk) => Promise<FileSystem> } | undefined;
  return mod?.openExt4 ? mod.openExt4(disk) : undefined;
}

export async function probeFilesystem(disk: Disk): Promise<ProbeResult> {
  const sb = await bytesAt(disk, 1024, 1024);
  if (sb && sb[56] === 0x53 && sb[57] === 0xef) {
    const kind = extKind(sb);
    const fs = await openExt(disk);
    return fs ? { kind, fs } : { kind, note: 'ext reader not available' };
  }
  if (text(await bytesAt(disk, 0, 4), 'XFSB')) return { kind: 'xfs', note: 'no XFS reader' };
  if (text(await bytesAt(disk, 65536 + 64, 8), '_BHRfS_M')) return { kind: 'btrfs', note: 'no btrfs reader' };
  for (const page of [4096, 8192, 16384, 65536]) {
    const sig = await bytesAt(disk, page - 10, 10);
    if (text(sig, 'SWAPSPACE2') || text(sig, 'SWAP-SPACE')) return { kind: 'swap' };
  }
  const s0 = await bytesAt(disk, 0, 512);
  if (s0 && looksLikeFat(s0)) return { kind: 'vfat', fs: await openFat(disk) };
  return { kind: 'unknown' };
}
