/**
 * VHD on-disk layout (Microsoft "Virtual Hard Disk Image Format
 * Specification"; qemu block/vpc.c), described once and used by both the
 * reader and the writers. All fields are big-endian.
 *
 *   fixed:        data (current size) | footer
 *   dynamic/diff: footer copy | dynamic header | BAT | blocks (sector bitmap + data) ... | footer
 */
import { defineStruct } from '../../util/struct.js';

export const SECTOR = 512;
export const FOOTER_SIZE = 512;
export const DYN_HEADER_SIZE = 1024;
export const FOOTER_COOKIE = 'conectix';
export const DYN_COOKIE = 'cxsparse';

export const vhdFooter = defineStruct('vhdFooter', FOOTER_SIZE, 'be', [
  { name: 'cookie', type: 'bytes:8', offset: 0 },
  { name: 'features', type: 'u32', offset: 8 },
  { name: 'version', type: 'u32', offset: 12 },
  { name: 'dataOffset', type: 'u64', offset: 16 },
  { name: 'timestamp', type: 'u32', offset: 24 },
  { name: 'creatorApp', type: 'bytes:4', offset: 28 },
  { name: 'creatorVersion', type: 'u32', offset: 32 },
  { name: 'creatorOs', type: 'bytes:4', offset: 36 },
  { name: 'originalSize', type: 'u64', offset: 40 },
  { name: 'currentSize', type: 'u64', offset: 48 },
  { name: 'cylinders', type: 'u16', offset: 56 },
  { name: 'heads', type: 'u8', offset: 58 },
  { name: 'sectorsPerTrack', type: 'u8', offset: 59 },
  { name: 'diskType', type: 'u32', offset: 60 },
  { name: 'checksum', type: 'u32', offset: 64 },
  { name: 'uniqueId', type: 'bytes:16', offset: 68 },
  { name: 'savedState', type: 'u8', offset: 84 },
] as const);
export const FOOTER_CHECKSUM_AT = 64;

export const vhdDynHeader = defineStruct('vhdDynHeader', DYN_HEADER_SIZE, 'be', [
  { name: 'cookie', type: 'bytes:8', offset: 0 },
  { name: 'dataOffset', type: 'u64', offset: 8 },
  { name: 'tableOffset', type: 'u64', offset: 16 },
  { name: 'headerVersion', type: 'u32', offset: 24 },
  { name: 'maxTableEntries', type: 'u32', offset: 28 },
  { name: 'blockSize', type: 'u32', offset: 32 },
  { name: 'checksum', type: 'u32', offset: 36 },
  { name: 'parentUniqueId', type: 'bytes:16', offset: 40 },
  { name: 'parentTimestamp', type: 'u32', offset: 56 },
  { name: 'parentName', type: 'bytes:512', offset: 64 },
] as const);
export const DYN_CHECKSUM_AT = 36;

/** Parent locator entries: 8 of them after the parent name. */
export const PARENT_LOCATOR_AT = 576;
export const PARENT_LOCATORS = 8;
export const vhdParentLocator = defineStruct('vhdParentLocator', 24, 'be', [
  { name: 'platformCode', type: 'u32', offset: 0 },
  { name: 'dataSpace', type: 'u32', offset: 4 },
  { name: 'dataLength', type: 'u32', offset: 8 },
  { name: 'dataOffset', type: 'u64', offset: 16 },
] as const);
if (PARENT_LOCATOR_AT + PARENT_LOCATORS * vhdParentLocator.size > DYN_HEADER_SIZE) throw new Error('vhd parent locators exceed the dynamic header');

/** Platform codes of the locators read: relative and absolute Windows paths, UTF-16LE. */
export const LOCATOR = { W2RU: 0x57327275, W2KU: 0x57326b75 } as const;

export const DISK_TYPE = { FIXED: 2, DYNAMIC: 3, DIFFERENCING: 4 } as const;
export const VHD_VERSION = 0x00010000;
/** Features field: bit 1 "reserved" must always be set. */
export const FEATURES_RESERVED = 2;
export const NO_OFFSET = 0xffffffffffffffffn;
export const BAT_UNUSED = 0xffffffff;

/** qemu's limit (2040 GiB), which is also what Hyper-V and Azure accept for VHD. */
export const MAX_VIRTUAL_SIZE = 0xff000000 * SECTOR;
/** Block sizes accepted: powers of two in [512 B, 256 MiB] (2 MiB is what everybody writes). */
export const MIN_BLOCK_BITS = 9;
export const MAX_BLOCK_BITS = 28;
export const DEFAULT_BLOCK_SIZE = 2 << 20;
/** A BAT above 64 MiB (16M blocks) would be hostile, not a disk. */
export const MAX_TABLE_ENTRIES = 1 << 24;
/** Largest CHS geometry: qemu reads current_size instead when a footer carries it. */
export const MAX_CHS_SECTORS = 65535 * 16 * 255;

/**
 * Creator apps whose footers' current_size is the disk size (qemu's table);
 * for the others ('vpc ', 'qemu', unknown) qemu takes cylinders*heads*sectors.
 */
export const SIZE_FROM_FOOTER = ['win ', 'qem2', 'd2v ', 'CTXS', 'tap\0', 'wa\0\0'];

/** The footer checksum: one's complement of the byte sum, the checksum field counted as zero. */
export function vhdChecksum(buf: Uint8Array, checksumAt: number): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i++) if (i < checksumAt || i >= checksumAt + 4) sum += buf[i];
  return ~sum >>> 0;
}

/** Size of a block's sector bitmap: one bit per sector, padded to a sector. */
export function bitmapSize(blockSize: number): number {
  return Math.ceil(blockSize / SECTOR / 8 / SECTOR) * SECTOR;
}

/** CHS geometry from a sector count, as the VHD specification's appendix computes it. */
export function chsGeometry(totalSectors: number): { cylinders: number; heads: number; sectorsPerTrack: number } {
  const ts = Math.min(totalSectors, MAX_CHS_SECTORS);
  let spt: number, heads: number, cth: number;
  if (ts >= 65535 * 16 * 63) {
    spt = 255;
    heads = 16;
    cth = Math.floor(ts / spt);
  } else {
    spt = 17;
    cth = Math.floor(ts / spt);
    heads = Math.max(4, Math.floor((cth + 1023) / 1024));
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cth = Math.floor(ts / spt);
    }
    if (cth >= heads * 1024) {
      spt = 63;
      heads = 16;
      cth = Math.floor(ts / spt);
    }
  }
  return { cylinders: Math.floor(cth / heads), heads, sectorsPerTrack: spt };
}

export function ascii(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}
