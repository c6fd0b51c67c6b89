/**
 * One entry point for partition tables: decides GPT / MBR / none from the
 * disk's first sectors and returns a uniform description, plus the boot
 * regions around the table. Partitions outside the disk stay listed (with a
 * warning) so nothing is silently hidden; `partitionDisk` refuses them.
 */
import type { Disk } from '../container/disk.js';
import { DiskSlice } from '../container/slice.js';
import { parseMbr, isProtective, hasMbrSignature, SECTOR, type Mbr } from './mbr.js';
import { readGpt, hasGptSignature, type Gpt } from './gpt.js';
import { findBootRegions, type BootRegion } from './boot.js';
import { BIOS_BOOT_GUID, gptTypeName, mbrTypeName, gptAttributeNames } from './part-types.js';
import { VmdnError } from '../errors.js';

export interface Partition {
  /** Linux / sfdisk partition number. */
  index: number;
  /** In sectors of `PartitionTable.sectorSize`, as sfdisk prints them. */
  start: number;
  size: number;
  /** Byte range on the disk. */
  offset: number;
  length: number;
  /** GPT: upper-case type GUID. MBR: the type byte in hex as sfdisk prints it ("83", "5"). */
  type: string;
  typeName: string;
  /** GPT partition name ('' for MBR). */
  name: string;
  /** GPT unique partition GUID (undefined for MBR). */
  uuid?: string;
  /** GPT attribute bits as hex, and their names. MBR: 'extended' / 'logical' markers. */
  attributes: string;
  flags: string[];
  /** MBR active flag, or GPT LegacyBIOSBootable. */
  bootable: boolean;
}

export interface PartitionTable {
  scheme: 'gpt' | 'mbr' | 'none';
  sectorSize: number;
  /** GPT disk GUID, or the MBR disk signature as "0x%08x" (sfdisk's label-id). */
  diskId?: string;
  /** GPT only: the usable LBA range and which header copy was used. */
  firstUsableLba?: number;
  lastUsableLba?: number;
  gptSource?: 'primary' | 'backup';
  partitions: Partition[];
  bootRegions: BootRegion[];
  warnings: string[];
}

/** A FAT/NTFS volume boot record also ends in 55AA; a filesystem written to the whole disk has no table. */
function looksLikeVbr(s: Uint8Array): boolean {
  if (s[0] !== 0xeb && s[0] !== 0xe9) return false;
  const txt = (a: number, n: number): string => Buffer.from(s.subarray(a, a + n)).toString('latin1');
  return txt(3, 8) === 'NTFS    ' || txt(54, 3) === 'FAT' || txt(82, 3) === 'FAT' || txt(3, 5) === 'EXFAT';
}

async function sectorAt(disk: Disk, off: number, n: number): Promise<Uint8Array | undefined> {
  return off + n <= disk.virtualSize ? disk.read(off, n) : undefined;
}

export async function readPartitionTable(disk: Disk): Promise<PartitionTable> {
  const none: PartitionTable = { scheme: 'none', sectorSize: SECTOR, partitions: [], bootRegions: [], warnings: [] };
  const s0 = await sectorAt(disk, 0, SECTOR);
  if (!s0) return none;
  const warnings: string[] = [];
  let mbr: Mbr | undefined;
  if (hasMbrSignature(s0) && !looksLikeVbr(s0)) {
    try {
      mbr = await parseMbr(disk, s0);
    } catch (err) {
      if (!(err instanceof VmdnError)) throw err;
      warnings.push(`sector 0 has a boot signature but no valid MBR: ${err.message}`);
    }
  }
  const at512 = await sectorAt(disk, 512, 512);
  const at4k = await sectorAt(disk, 4096, 512);
  const gptSig512 = !!at512 && hasGptSignature(at512);
  const gptSig4k = !!at4k && hasGptSignature(at4k);
  if ((mbr && isProtective(mbr)) || gptSig512 || gptSig4k) {
    if (!mbr || !isProtective(mbr)) warnings.push('GPT found without a protective MBR');
    else if (mbr.partitions.length > 0) warnings.push('hybrid MBR: GPT used, MBR entries besides 0xEE ignored');
    const gpt = await readGpt(disk, gptSig4k && !gptSig512 ? 4096 : SECTOR);
    return fromGpt(disk, gpt, !!mbr, [...warnings, ...gpt.warnings]);
  }
  if (mbr) return fromMbr(disk, mbr, [...warnings, ...mbr.warnings]);
  return { ...none, warnings };
}

async function fromGpt(disk: Disk, gpt: Gpt, hasMbr: boolean, warnings: string[]): Promise<PartitionTable> {
  const ss = gpt.sectorSize;
  const partitions: Partition[] = gpt.partitions.map((p) => ({
    index: p.index, start: p.start, size: p.size, offset: p.start * ss, length: p.size * ss,
    type: p.typeGuid, typeName: gptTypeName(p.typeGuid), name: p.name, uuid: p.uuid,
    attributes: '0x' + p.attributes.toString(16).padStart(16, '0'), flags: gptAttributeNames(p.attributes),
    bootable: (p.attributes & 4n) !== 0n,
  }));
  for (const p of partitions) if (p.offset + p.length > disk.virtualSize) warnings.push(`partition ${p.index} extends past the disk end`);
  const h = gpt.header;
  // The boot gap starts after the primary entry array, wherever the table was read from.
  const tableEnd = (2 + Math.ceil((h.numEntries * h.entrySize) / ss)) * ss;
  const bootRegions = await findBootRegions(disk, {
    tableEnd, hasMbr,
    partitions: partitions.map((p) => ({ index: p.index, offset: p.offset, size: p.length, biosBoot: p.type === BIOS_BOOT_GUID })),
  });
  return {
    scheme: 'gpt', sectorSize: ss, diskId: h.diskGuid, firstUsableLba: h.firstUsableLba, lastUsableLba: h.lastUsableLba,
    gptSource: gpt.source, partitions, bootRegions, warnings,
  };
}

async function fromMbr(disk: Disk, mbr: Mbr, warnings: string[]): Promise<PartitionTable> {
  const partitions: Partition[] = mbr.partitions.map((p) => ({
    index: p.index, start: p.start, size: p.size, offset: p.start * SECTOR, length: p.size * SECTOR,
    type: p.type.toString(16), typeName: mbrTypeName(p.type), name: '',
    attributes: '0x' + (p.bootable ? '80' : '00'),
    flags: [...(p.extended ? ['extended'] : []), ...(p.logical ? ['logical'] : []), ...(p.bootable ? ['boot'] : [])],
    bootable: p.bootable,
  }));
  const bootRegions = await findBootRegions(disk, {
    tableEnd: SECTOR, hasMbr: true,
    partitions: partitions.map((p) => ({ index: p.index, offset: p.offset, size: p.length, biosBoot: false })),
  });
  const diskId = '0x' + mbr.diskSignature.toString(16).padStart(8, '0');
  return { scheme: 'mbr', sectorSize: SECTOR, diskId, partitions, bootRegions, warnings };
}

/** The partition as a Disk of its own; E_FORMAT if it does not lie within the disk. */
export function partitionDisk(disk: Disk, p: Pick<Partition, 'offset' | 'length'>): DiskSlice {
  return new DiskSlice(disk, p.offset, p.length);
}
