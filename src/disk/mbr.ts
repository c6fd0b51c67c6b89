/**
 * MBR (DOS) partition tables: four primary slots, plus the chain of extended
 * boot records (EBRs) inside an extended partition that describes logical
 * partitions. Every LBA is checked against the disk size and the chain
 * against loops, since both come straight from the image.
 */
import type { Disk } from '../container/disk.js';
import { defineStruct } from '../util/struct.js';
import { VmdnError } from '../errors.js';

export const SECTOR = 512;

export const MbrStruct = defineStruct('mbr', 512, 'le', [
  { name: 'bootCode', type: 'bytes:440', offset: 0 },
  { name: 'diskSignature', type: 'u32', offset: 440 },
  { name: 'reserved', type: 'u16', offset: 444 },
  { name: 'entries', type: 'bytes:64', offset: 446 },
  { name: 'signature', type: 'u16', offset: 510 },
] as const);

export const MbrEntryStruct = defineStruct('mbr-entry', 16, 'le', [
  { name: 'status', type: 'u8', offset: 0 },
  { name: 'chsFirst', type: 'bytes:3', offset: 1 },
  { name: 'type', type: 'u8', offset: 4 },
  { name: 'chsLast', type: 'bytes:3', offset: 5 },
  { name: 'lbaStart', type: 'u32', offset: 8 },
  { name: 'sectors', type: 'u32', offset: 12 },
] as const);

export const PROTECTIVE_TYPE = 0xee;
const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
/** Linux numbers at most 60-odd logical partitions; anything near this is a crafted chain. */
const MAX_LOGICAL = 256;

export interface MbrPartition {
  /** 1-4 primary, 5+ logical (Linux/sfdisk numbering). */
  index: number;
  /** In sectors. */
  start: number;
  size: number;
  type: number;
  bootable: boolean;
  extended: boolean;
  logical: boolean;
}

export interface Mbr {
  diskSignature: number;
  bootCode: Uint8Array;
  /** Raw primary entries (including empty ones) for protective-MBR checks. */
  primary: Array<{ type: number; start: number; size: number; status: number }>;
  partitions: MbrPartition[];
  warnings: string[];
}

export function hasMbrSignature(sector0: Uint8Array): boolean {
  return sector0.length >= 512 && sector0[510] === 0x55 && sector0[511] === 0xaa;
}

/** A protective (or hybrid) MBR: some primary slot has type 0xEE. */
export function isProtective(mbr: Pick<Mbr, 'primary'>): boolean {
  return mbr.primary.some((e) => e.type === PROTECTIVE_TYPE);
}

function entries(sector: Uint8Array): Array<ReturnType<typeof MbrEntryStruct.parse>> {
  return [0, 1, 2, 3].map((i) => MbrEntryStruct.parse(sector, 446 + i * 16));
}

/**
 * Parse sector 0 (already read) and follow the EBR chain on `disk`.
 * Throws E_FORMAT only when sector 0 is not an MBR at all; bad entries and
 * broken chains become warnings so the rest of the table stays readable.
 */
export async function parseMbr(disk: Disk, sector0: Uint8Array): Promise<Mbr> {
  if (!hasMbrSignature(sector0)) throw new VmdnError('E_FORMAT', 'no MBR boot signature (0x55AA)');
  const m = MbrStruct.parse(sector0);
  const diskSectors = Math.floor(disk.virtualSize / SECTOR);
  const warnings: string[] = [];
  const partitions: MbrPartition[] = [];
  const raw = entries(sector0);
  for (const e of raw) {
    if (e.status !== 0 && e.status !== 0x80) throw new VmdnError('E_FORMAT', `MBR entry status byte 0x${e.status.toString(16)} is neither 0x00 nor 0x80`);
  }
  const primary = raw.map((e) => ({ type: e.type, start: e.lbaStart, size: e.sectors, status: e.status }));
  let extended: MbrPartition | undefined;
  raw.forEach((e, i) => {
    if (e.type === 0 || e.type === PROTECTIVE_TYPE) return;
    const p: MbrPartition = {
      index: i + 1, start: e.lbaStart, size: e.sectors, type: e.type,
      bootable: e.status === 0x80, extended: EXTENDED_TYPES.has(e.type), logical: false,
    };
    if (p.start === 0 || p.size === 0) warnings.push(`MBR partition ${p.index}: empty or starts at sector 0`);
    if (p.start + p.size > diskSectors) warnings.push(`MBR partition ${p.index} ends at sector ${p.start + p.size}, past the disk end (${diskSectors})`);
    partitions.push(p);
    if (p.extended) {
      if (extended) warnings.push(`MBR partition ${p.index}: second extended partition ignored`);
      else extended = p;
    }
  });
  if (extended) partitions.push(...(await readLogical(disk, extended, diskSectors, warnings)));
  return { diskSignature: m.diskSignature, bootCode: m.bootCode, primary, partitions, warnings };
}

/** Walk the EBR chain. Each EBR: entry 0 = logical partition (relative to this EBR), entry 1 = next EBR (relative to the extended start). */
async function readLogical(disk: Disk, ext: MbrPartition, diskSectors: number, warnings: string[]): Promise<MbrPartition[]> {
  const out: MbrPartition[] = [];
  const seen = new Set<number>();
  const extEnd = Math.min(ext.start + ext.size, diskSectors);
  let ebr = ext.start;
  while (true) {
    if (seen.has(ebr)) { warnings.push(`EBR chain loops back to sector ${ebr}`); break; }
    if (out.length >= MAX_LOGICAL) { warnings.push(`more than ${MAX_LOGICAL} logical partitions; chain truncated`); break; }
    if (ebr < ext.start || ebr >= extEnd) { warnings.push(`EBR at sector ${ebr} lies outside the extended partition`); break; }
    seen.add(ebr);
    const sec = await disk.read(ebr * SECTOR, SECTOR);
    if (!hasMbrSignature(sec)) { warnings.push(`EBR at sector ${ebr} has no boot signature`); break; }
    const [e0, e1] = entries(sec);
    if (e0.type !== 0 && e0.sectors !== 0) {
      const p: MbrPartition = {
        index: 5 + out.length, start: ebr + e0.lbaStart, size: e0.sectors, type: e0.type,
        bootable: e0.status === 0x80, extended: false, logical: true,
      };
      if (p.start + p.size > extEnd) warnings.push(`logical partition ${p.index} ends past its extended partition`);
      out.push(p);
    }
    if (e1.type === 0 || e1.lbaStart === 0) break;
    if (!EXTENDED_TYPES.has(e1.type)) warnings.push(`EBR at sector ${ebr}: link entry has type 0x${e1.type.toString(16)}`);
    ebr = ext.start + e1.lbaStart;
  }
  return out;
}
