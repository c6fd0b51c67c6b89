/**
 * GUID Partition Table: primary header at LBA 1, backup at the last LBA, each
 * with its own copy of the entry array. Both CRC32s are checked; if the
 * primary (header or entries) is bad the backup is used and a warning says so.
 * Counts and sizes are bounded before anything is allocated or read.
 */
import type { Disk } from '../container/disk.js';
import { defineStruct } from '../util/struct.js';
import { crc32 } from '../util/crc32.js';
import { VmdnError, check } from '../errors.js';

export const GptHeaderStruct = defineStruct('gpt-header', 92, 'le', [
  { name: 'signature', type: 'bytes:8', offset: 0 },
  { name: 'revision', type: 'u32', offset: 8 },
  { name: 'headerSize', type: 'u32', offset: 12 },
  { name: 'headerCrc', type: 'u32', offset: 16 },
  { name: 'reserved', type: 'u32', offset: 20 },
  { name: 'myLba', type: 'u64', offset: 24 },
  { name: 'alternateLba', type: 'u64', offset: 32 },
  { name: 'firstUsableLba', type: 'u64', offset: 40 },
  { name: 'lastUsableLba', type: 'u64', offset: 48 },
  { name: 'diskGuid', type: 'bytes:16', offset: 56 },
  { name: 'entriesLba', type: 'u64', offset: 72 },
  { name: 'numEntries', type: 'u32', offset: 80 },
  { name: 'entrySize', type: 'u32', offset: 84 },
  { name: 'entriesCrc', type: 'u32', offset: 88 },
] as const);

export const GptEntryStruct = defineStruct('gpt-entry', 128, 'le', [
  { name: 'typeGuid', type: 'bytes:16', offset: 0 },
  { name: 'uniqueGuid', type: 'bytes:16', offset: 16 },
  { name: 'firstLba', type: 'u64', offset: 32 },
  { name: 'lastLba', type: 'u64', offset: 40 },
  { name: 'attributes', type: 'u64', offset: 48 },
  { name: 'name', type: 'bytes:72', offset: 56 },
] as const);

export const GPT_SIGNATURE = 'EFI PART';
/** The spec's minimum array is 128 entries; tools never exceed a few hundred. Beyond this is corruption or an attack. */
export const MAX_ENTRIES = 1024;
const MAX_ENTRY_SIZE = 4096;

export interface GptHeader {
  lba: number;
  alternateLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  diskGuid: string;
  entriesLba: number;
  numEntries: number;
  entrySize: number;
}

export interface GptPartition {
  /** 1-based slot number in the entry array (sfdisk's numbering). */
  index: number;
  start: number;
  size: number;
  typeGuid: string;
  uuid: string;
  name: string;
  attributes: bigint;
}

export interface Gpt {
  sectorSize: number;
  header: GptHeader;
  /** Which copy the table was read from. */
  source: 'primary' | 'backup';
  partitions: GptPartition[];
  warnings: string[];
}

/** Mixed-endian GUID bytes -> canonical upper-case text (sfdisk's spelling). */
export function guidToString(b: Uint8Array): string {
  const h = (i: number): string => b[i].toString(16).padStart(2, '0');
  const s = [3, 2, 1, 0].map(h).join('') + '-' + [5, 4].map(h).join('') + '-' + [7, 6].map(h).join('') + '-' +
    [8, 9].map(h).join('') + '-' + [10, 11, 12, 13, 14, 15].map(h).join('');
  return s.toUpperCase();
}

function big(n: bigint, what: string): number {
  check(n <= BigInt(Number.MAX_SAFE_INTEGER), 'E_FORMAT', `GPT ${what} ${n} is out of range`);
  return Number(n);
}

/** Validate one header and its entry array; throws E_FORMAT on any inconsistency. */
async function readCopy(disk: Disk, ss: number, lba: number): Promise<{ header: GptHeader; entries: Uint8Array }> {
  const sectors = Math.floor(disk.virtualSize / ss);
  check(lba >= 1 && lba < sectors, 'E_FORMAT', `GPT header LBA ${lba} is outside the disk`);
  const sec = await disk.read(lba * ss, ss);
  const h = GptHeaderStruct.parse(sec);
  check(Buffer.from(h.signature).toString('latin1') === GPT_SIGNATURE, 'E_FORMAT', `no GPT signature at LBA ${lba}`);
  check(h.headerSize >= 92 && h.headerSize <= ss, 'E_FORMAT', `GPT header size ${h.headerSize} is invalid`);
  const copy = Uint8Array.from(sec.subarray(0, h.headerSize));
  copy.fill(0, 16, 20);
  check(crc32(copy) === h.headerCrc, 'E_FORMAT', `GPT header CRC mismatch at LBA ${lba}`);
  const header: GptHeader = {
    lba: big(h.myLba, 'header LBA'),
    alternateLba: big(h.alternateLba, 'alternate LBA'),
    firstUsableLba: big(h.firstUsableLba, 'first usable LBA'),
    lastUsableLba: big(h.lastUsableLba, 'last usable LBA'),
    diskGuid: guidToString(h.diskGuid),
    entriesLba: big(h.entriesLba, 'entry array LBA'),
    numEntries: h.numEntries,
    entrySize: h.entrySize,
  };
  check(header.lba === lba, 'E_FORMAT', `GPT header at LBA ${lba} claims to be at LBA ${header.lba}`);
  check(header.numEntries <= MAX_ENTRIES, 'E_FORMAT', `GPT entry count ${header.numEntries} exceeds ${MAX_ENTRIES}`, { numEntries: header.numEntries });
  const es = header.entrySize;
  check(es >= 128 && es <= MAX_ENTRY_SIZE && (es & (es - 1)) === 0, 'E_FORMAT', `GPT entry size ${es} is not 128 * 2^n`, { entrySize: es });
  check(header.firstUsableLba <= header.lastUsableLba + 1 && header.lastUsableLba < sectors, 'E_FORMAT',
    `GPT usable range ${header.firstUsableLba}-${header.lastUsableLba} does not fit the ${sectors}-sector disk`);
  const bytes = header.numEntries * es;
  const arraySectors = Math.ceil(bytes / ss);
  check(header.entriesLba >= 1 && header.entriesLba + arraySectors <= sectors, 'E_FORMAT', `GPT entry array at LBA ${header.entriesLba} lies outside the disk`);
  const entries = await disk.read(header.entriesLba * ss, bytes);
  check(crc32(entries) === h.entriesCrc, 'E_FORMAT', `GPT entry array CRC mismatch (header at LBA ${lba})`);
  return { header, entries };
}

function decodeName(b: Uint8Array): string {
  let end = 0;
  while (end + 1 < b.length && (b[end] | b[end + 1]) !== 0) end += 2;
  return Buffer.from(b.subarray(0, end)).toString('utf16le');
}

function parseEntries(header: GptHeader, entries: Uint8Array, warnings: string[]): GptPartition[] {
  const out: GptPartition[] = [];
  for (let i = 0; i < header.numEntries; i++) {
    const e = GptEntryStruct.parse(entries, i * header.entrySize);
    if (e.typeGuid.every((x) => x === 0)) continue;
    const first = e.firstLba, last = e.lastLba;
    if (last < first || first < BigInt(header.firstUsableLba) || last > BigInt(header.lastUsableLba)) {
      warnings.push(`GPT entry ${i + 1}: LBA range ${first}-${last} is outside the usable area; skipped`);
      continue;
    }
    out.push({
      index: i + 1, start: Number(first), size: Number(last - first + 1n),
      typeGuid: guidToString(e.typeGuid), uuid: guidToString(e.uniqueGuid),
      name: decodeName(e.name), attributes: e.attributes,
    });
  }
  return out;
}

/** Whether `sec` (LBA 1 at some sector size) starts with the GPT signature. */
export function hasGptSignature(sec: Uint8Array): boolean {
  return sec.length >= 8 && Buffer.from(sec.subarray(0, 8)).toString('latin1') === GPT_SIGNATURE;
}

export async function readGpt(disk: Disk, ss: number): Promise<Gpt> {
  const warnings: string[] = [];
  const lastLba = Math.floor(disk.virtualSize / ss) - 1;
  check(lastLba >= 2, 'E_FORMAT', 'disk too small for a GPT');
  let primary: { header: GptHeader; entries: Uint8Array } | undefined;
  let primaryErr: VmdnError | undefined;
  try {
    primary = await readCopy(disk, ss, 1);
  } catch (err) {
    if (!(err instanceof VmdnError)) throw err;
    primaryErr = err;
  }
  // The backup normally sits on the last LBA; a valid primary says where exactly.
  const backupLba = primary && primary.header.alternateLba <= lastLba ? primary.header.alternateLba : lastLba;
  let backup: { header: GptHeader; entries: Uint8Array } | undefined;
  let backupErr: VmdnError | undefined;
  try {
    backup = await readCopy(disk, ss, backupLba);
  } catch (err) {
    if (!(err instanceof VmdnError)) throw err;
    backupErr = err;
  }
  let used: { header: GptHeader; entries: Uint8Array };
  let source: 'primary' | 'backup';
  if (primary) {
    used = primary; source = 'primary';
    if (!backup) warnings.push(`backup GPT is invalid: ${backupErr?.message}`);
  } else if (backup) {
    used = backup; source = 'backup';
    warnings.push(`primary GPT is invalid (${primaryErr?.message}); using the backup at LBA ${backupLba}`);
  } else {
    throw new VmdnError('E_FORMAT', `no valid GPT: primary: ${primaryErr?.message}; backup: ${backupErr?.message}`);
  }
  return { sectorSize: ss, header: used.header, source, partitions: parseEntries(used.header, used.entries, warnings), warnings };
}
