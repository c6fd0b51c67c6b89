/**
 * VHDX on-disk layout ([MS-VHDX] v1.0; qemu block/vhdx.h; libvhdi's format
 * notes), described once and used by the reader, the log replay and the
 * writer. All fields are little-endian; GUIDs are in Microsoft's mixed-endian
 * form (first three fields little-endian).
 *
 *   0       file identifier "vhdxfile" (64 KiB)
 *   64 KiB  header 1, 128 KiB header 2 (4 KiB each, CRC-32C; highest valid sequence wins)
 *   192 KiB region table 1, 256 KiB region table 2 (64 KiB each: where the BAT and metadata are)
 *   1 MiB.. log, metadata region, BAT region, payload blocks and sector bitmaps, all 1 MiB aligned
 */
import { defineStruct } from '../../util/struct.js';

export const KiB = 1024;
export const MiB = 1 << 20;
export const FILE_ID_SIGNATURE = 'vhdxfile';
export const HEADER_OFFSETS = [64 * KiB, 128 * KiB] as const;
export const HEADER_SIZE = 4 * KiB;
export const REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB] as const;
export const REGION_TABLE_SIZE = 64 * KiB;
/** Everything below 1 MiB is the header section; regions and blocks live above it. */
export const HEADER_SECTION = MiB;

export const HEAD_SIGNATURE = 0x64616568; // "head"
export const REGI_SIGNATURE = 0x69676572; // "regi"
export const LOGE_SIGNATURE = 0x65676f6c; // "loge"
export const DESC_SIGNATURE = 0x63736564; // "desc"
export const ZERO_SIGNATURE = 0x6f72657a; // "zero"
export const DATA_SIGNATURE = 0x61746164; // "data"
export const METADATA_SIGNATURE = 'metadata';

export const vhdxHeader = defineStruct('vhdxHeader', HEADER_SIZE, 'le', [
  { name: 'signature', type: 'u32', offset: 0 },
  { name: 'checksum', type: 'u32', offset: 4 },
  { name: 'sequenceNumber', type: 'u64', offset: 8 },
  { name: 'fileWriteGuid', type: 'bytes:16', offset: 16 },
  { name: 'dataWriteGuid', type: 'bytes:16', offset: 32 },
  { name: 'logGuid', type: 'bytes:16', offset: 48 },
  { name: 'logVersion', type: 'u16', offset: 64 },
  { name: 'version', type: 'u16', offset: 66 },
  { name: 'logLength', type: 'u32', offset: 68 },
  { name: 'logOffset', type: 'u64', offset: 72 },
] as const);
/** Every checksummed structure keeps its CRC-32C at byte 4, computed with that field zeroed. */
export const CHECKSUM_AT = 4;

export const regionTableHeader = defineStruct('vhdxRegionTableHeader', 16, 'le', [
  { name: 'signature', type: 'u32', offset: 0 },
  { name: 'checksum', type: 'u32', offset: 4 },
  { name: 'entryCount', type: 'u32', offset: 8 },
] as const);
export const regionEntry = defineStruct('vhdxRegionEntry', 32, 'le', [
  { name: 'guid', type: 'bytes:16', offset: 0 },
  { name: 'fileOffset', type: 'u64', offset: 16 },
  { name: 'length', type: 'u32', offset: 24 },
  { name: 'dataBits', type: 'u32', offset: 28 },
] as const);
export const MAX_REGION_ENTRIES = 2047;
export const REGION_REQUIRED = 1;
if (regionTableHeader.size + MAX_REGION_ENTRIES * regionEntry.size > REGION_TABLE_SIZE) throw new Error('vhdx region entries exceed the table');

export const metadataTableHeader = defineStruct('vhdxMetadataTableHeader', 32, 'le', [
  { name: 'signature', type: 'bytes:8', offset: 0 },
  { name: 'entryCount', type: 'u16', offset: 10 },
] as const);
export const metadataEntry = defineStruct('vhdxMetadataEntry', 32, 'le', [
  { name: 'itemId', type: 'bytes:16', offset: 0 },
  { name: 'offset', type: 'u32', offset: 16 },
  { name: 'length', type: 'u32', offset: 20 },
  { name: 'dataBits', type: 'u32', offset: 24 },
] as const);
export const MAX_METADATA_ENTRIES = 2047;
/** Items start at least 64 KiB into the region (after the table); none is longer than 1 MiB. */
export const METADATA_TABLE_SIZE = 64 * KiB;
export const MAX_METADATA_ITEM = MiB;
export const META_IS_VIRTUAL_DISK = 2;
export const META_IS_REQUIRED = 4;
if (metadataTableHeader.size + MAX_METADATA_ENTRIES * metadataEntry.size > METADATA_TABLE_SIZE) throw new Error('vhdx metadata entries exceed the table');

export const fileParameters = defineStruct('vhdxFileParameters', 8, 'le', [
  { name: 'blockSize', type: 'u32', offset: 0 },
  { name: 'dataBits', type: 'u32', offset: 4 },
] as const);
export const PARAM_LEAVE_BLOCKS_ALLOCATED = 1;
export const PARAM_HAS_PARENT = 2;

export const parentLocatorHeader = defineStruct('vhdxParentLocatorHeader', 20, 'le', [
  { name: 'locatorType', type: 'bytes:16', offset: 0 },
  { name: 'keyValueCount', type: 'u16', offset: 18 },
] as const);
export const parentLocatorEntry = defineStruct('vhdxParentLocatorEntry', 12, 'le', [
  { name: 'keyOffset', type: 'u32', offset: 0 },
  { name: 'valueOffset', type: 'u32', offset: 4 },
  { name: 'keyLength', type: 'u16', offset: 8 },
  { name: 'valueLength', type: 'u16', offset: 10 },
] as const);

export const LOG_SECTOR = 4 * KiB;
export const logEntryHeader = defineStruct('vhdxLogEntryHeader', 64, 'le', [
  { name: 'signature', type: 'u32', offset: 0 },
  { name: 'checksum', type: 'u32', offset: 4 },
  { name: 'entryLength', type: 'u32', offset: 8 },
  { name: 'tail', type: 'u32', offset: 12 },
  { name: 'sequenceNumber', type: 'u64', offset: 16 },
  { name: 'descriptorCount', type: 'u32', offset: 24 },
  { name: 'logGuid', type: 'bytes:16', offset: 32 },
  { name: 'flushedFileOffset', type: 'u64', offset: 48 },
  { name: 'lastFileOffset', type: 'u64', offset: 56 },
] as const);
/** A data descriptor's trailing (4) and leading (8) bytes are the ones its data sector's own header and footer displace. */
export const logDescriptor = defineStruct('vhdxLogDescriptor', 32, 'le', [
  { name: 'signature', type: 'u32', offset: 0 },
  { name: 'trailingBytes', type: 'bytes:4', offset: 4 },
  { name: 'leadingOrZeroLength', type: 'bytes:8', offset: 8 },
  { name: 'fileOffset', type: 'u64', offset: 16 },
  { name: 'sequenceNumber', type: 'u64', offset: 24 },
] as const);
export const logDataSector = defineStruct('vhdxLogDataSector', LOG_SECTOR, 'le', [
  { name: 'signature', type: 'u32', offset: 0 },
  { name: 'sequenceHigh', type: 'u32', offset: 4 },
  { name: 'data', type: 'bytes:4084', offset: 8 },
  { name: 'sequenceLow', type: 'u32', offset: 4092 },
] as const);

/** Payload block states (the BAT entry's low 3 bits); qemu also reads 5 as UNMAPPED (spec draft 0.95). */
export const PAYLOAD = { NOT_PRESENT: 0, UNDEFINED: 1, ZERO: 2, UNMAPPED: 3, UNMAPPED_V095: 5, FULLY_PRESENT: 6, PARTIALLY_PRESENT: 7 } as const;
export const SB_PRESENT = 6;
/** A BAT entry: state in bits 0-2, file offset in MiB in bits 20-63. */
export const BAT_OFFSET_SHIFT = 20n;

/** Block sizes: powers of two in [1 MiB, 256 MiB]; a sector bitmap block covers 2^23 sectors. */
export const MIN_BLOCK_SIZE = MiB;
export const MAX_BLOCK_SIZE = 256 * MiB;
export const SECTORS_PER_BITMAP = 1 << 23;
export const SECTOR_BITMAP_SIZE = MiB;
export const MAX_VIRTUAL_SIZE = 64 * 1024 * 1024 * MiB; // 64 TiB
/** BAT entries read at most (128 MiB of table): more is a hostile file, not a disk we can hold in memory. */
export const MAX_BAT_ENTRIES = 1 << 24;

/** Writer defaults: 2 MiB blocks (sparse enough for dedup-friendly exports), 512-byte logical sectors, 1 MiB log. */
export const DEFAULT_BLOCK_SIZE = 2 * MiB;
export const DEFAULT_LOGICAL_SECTOR = 512;
export const DEFAULT_PHYSICAL_SECTOR = 4096;
export const LOG_SIZE = MiB;

/** GUID text "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" -> the 16 bytes on disk (mixed-endian). */
export function guid(s: string): Uint8Array {
  const h = s.replace(/[{}-]/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(h)) throw new Error(`bad GUID ${s}`);
  const b = Buffer.from(h, 'hex');
  return Uint8Array.from([b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], ...b.subarray(8)]);
}

/** The 16 on-disk bytes as "{XXXXXXXX-XXXX-...}" (how parent_linkage spells a GUID). */
export function guidText(g: Uint8Array): string {
  const x = (a: number, b: number): string => Buffer.from(g.subarray(a, b)).toString('hex');
  const rev = (a: number, b: number): string => Buffer.from(g.subarray(a, b)).reverse().toString('hex');
  return `{${rev(0, 4)}-${rev(4, 6)}-${rev(6, 8)}-${x(8, 10)}-${x(10, 16)}}`.toUpperCase();
}

export const REGION = {
  BAT: guid('2DC27766-F623-4200-9D64-115E9BFD4A08'),
  METADATA: guid('8B7CA206-4790-4B9A-B8FE-575F050F886E'),
} as const;
export const META = {
  FILE_PARAMETERS: guid('CAA16737-FA36-4D43-B3B6-33F0AA44E76B'),
  VIRTUAL_DISK_SIZE: guid('2FA54224-CD1B-4876-B211-5DBED83BF4B8'),
  PAGE83: guid('BECA12AB-B2E6-4523-93EF-C309E000C746'),
  LOGICAL_SECTOR_SIZE: guid('8141BF1D-A96F-4709-BA47-F233A8FAAB5F'),
  PHYSICAL_SECTOR_SIZE: guid('CDA348C7-445D-4471-9CC9-E9885251C556'),
  PARENT_LOCATOR: guid('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C'),
} as const;
/** The one parent locator type defined: a VHDX parent. */
export const VHDX_PARENT_LOCATOR_TYPE = guid('B04AEFB7-D19E-4A81-B789-25B8E9445913');

export function sameGuid(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

/** Chunk ratio: payload blocks per sector bitmap block (the BAT interleaves one bitmap entry after each chunk). */
export function chunkRatio(blockSize: number, logicalSector: number): number {
  return (SECTORS_PER_BITMAP * logicalSector) / blockSize;
}

/** BAT entries for a disk: payload entries with a bitmap entry after every chunk (a full last chunk's worth when differencing). */
export function batEntries(virtualSize: number, blockSize: number, logicalSector: number, differencing: boolean): number {
  const blocks = Math.ceil(virtualSize / blockSize);
  const ratio = chunkRatio(blockSize, logicalSector);
  if (differencing) return Math.ceil(blocks / ratio) * (ratio + 1);
  return blocks === 0 ? 0 : blocks + Math.floor((blocks - 1) / ratio);
}

/** BAT index of payload block `b`. */
export function payloadIndex(b: number, ratio: number): number {
  return b + Math.floor(b / ratio);
}
