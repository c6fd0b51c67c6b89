/**
 * Boot regions: the places outside any filesystem where boot loaders live
 * (MBR boot code, the gap GRUB embeds core.img into, the GPT BIOS boot
 * partition). Reported with their extent and whether they hold anything, so
 * callers can carry them over verbatim instead of treating them as free space.
 */
import type { Disk } from '../container/disk.js';
import { isZero } from '../util/zero.js';

export interface BootRegion {
  kind: 'mbr-boot-code' | 'post-table-gap' | 'bios-boot-partition';
  /** Byte range on the disk. */
  offset: number;
  size: number;
  /** False when every byte is zero; undefined when the region is too large to scan. */
  used?: boolean;
  /** Partition index, for bios-boot-partition. */
  partition?: number;
}

/** Regions larger than this are reported without scanning them. */
const MAX_SCAN = 64 << 20;

async function isUsed(disk: Disk, offset: number, size: number): Promise<boolean | undefined> {
  if (size > MAX_SCAN) return undefined;
  for (let o = 0; o < size; o += 1 << 20) {
    const buf = await disk.read(offset + o, Math.min(1 << 20, size - o));
    if (!isZero(buf)) return true;
  }
  return false;
}

export interface BootInput {
  /** First byte after the partition table structures at the disk start (512 for MBR, end of the GPT entry array). */
  tableEnd: number;
  /** Byte offsets of partitions' starts and BIOS boot partitions. */
  partitions: Array<{ index: number; offset: number; size: number; biosBoot: boolean }>;
  hasMbr: boolean;
}

export async function findBootRegions(disk: Disk, inp: BootInput): Promise<BootRegion[]> {
  const out: BootRegion[] = [];
  if (inp.hasMbr) out.push({ kind: 'mbr-boot-code', offset: 0, size: 440, used: await isUsed(disk, 0, 440) });
  const starts = inp.partitions.filter((p) => p.size > 0).map((p) => p.offset);
  const firstStart = starts.length ? Math.min(...starts, disk.virtualSize) : 0;
  if (firstStart > inp.tableEnd) {
    const size = firstStart - inp.tableEnd;
    out.push({ kind: 'post-table-gap', offset: inp.tableEnd, size, used: await isUsed(disk, inp.tableEnd, size) });
  }
  for (const p of inp.partitions) {
    if (!p.biosBoot || p.offset + p.size > disk.virtualSize) continue;
    out.push({ kind: 'bios-boot-partition', offset: p.offset, size: p.size, partition: p.index, used: await isUsed(disk, p.offset, p.size) });
  }
  return out;
}
