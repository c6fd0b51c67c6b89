/**
 * VDI (VirtualBox) on-disk layout, version 1.1 (qemu block/vdi.c), described
 * once and used by both the reader and the writer. All fields little-endian.
 *
 *   text banner | header (at 0x40) | block map (u32 per block) | blocks
 */
import { defineStruct } from '../../util/struct.js';

export const SECTOR = 512;
export const VDI_SIGNATURE = 0xbeda107f;
export const VDI_VERSION_1_1 = 0x00010001;
/** header_size of a v1.1 header: the bytes from 0x48 up to the unused tail. */
export const VDI_HEADER_SIZE_1_1 = 0x180;
export const HEADER_BYTES = 0x200;

export const vdiHeader = defineStruct('vdiHeader', HEADER_BYTES, 'le', [
  { name: 'text', type: 'bytes:64', offset: 0x00 },
  { name: 'signature', type: 'u32', offset: 0x40 },
  { name: 'version', type: 'u32', offset: 0x44 },
  { name: 'headerSize', type: 'u32', offset: 0x48 },
  { name: 'imageType', type: 'u32', offset: 0x4c },
  { name: 'imageFlags', type: 'u32', offset: 0x50 },
  { name: 'description', type: 'bytes:256', offset: 0x54 },
  { name: 'offsetBmap', type: 'u32', offset: 0x154 },
  { name: 'offsetData', type: 'u32', offset: 0x158 },
  { name: 'cylinders', type: 'u32', offset: 0x15c },
  { name: 'heads', type: 'u32', offset: 0x160 },
  { name: 'sectors', type: 'u32', offset: 0x164 },
  { name: 'sectorSize', type: 'u32', offset: 0x168 },
  { name: 'diskSize', type: 'u64', offset: 0x170 },
  { name: 'blockSize', type: 'u32', offset: 0x178 },
  { name: 'blockExtra', type: 'u32', offset: 0x17c },
  { name: 'blocksInImage', type: 'u32', offset: 0x180 },
  { name: 'blocksAllocated', type: 'u32', offset: 0x184 },
  { name: 'uuidImage', type: 'bytes:16', offset: 0x188 },
  { name: 'uuidLastSnap', type: 'bytes:16', offset: 0x198 },
  { name: 'uuidLink', type: 'bytes:16', offset: 0x1a8 },
  { name: 'uuidParent', type: 'bytes:16', offset: 0x1b8 },
] as const);

export const IMAGE_TYPE = { DYNAMIC: 1, STATIC: 2, UNDO: 3, DIFF: 4 } as const;
/** Block map values: not allocated (reads zeros), discarded (reads zeros). Others index the data area. */
export const BMAP_UNALLOCATED = 0xffffffff;
export const BMAP_DISCARDED = 0xfffffffe;

export const DEFAULT_BLOCK_SIZE = 1 << 20;
/** Block sizes read: powers of two in [4 KiB, 64 MiB] (VirtualBox and qemu write 1 MiB). */
export const MIN_BLOCK_BITS = 12;
export const MAX_BLOCK_BITS = 26;
/** A block map above 64 MiB (16M blocks, 16 TiB at 1 MiB) would be hostile, not a disk. */
export const MAX_BLOCKS = 1 << 24;
export const MAX_VIRTUAL_SIZE = MAX_BLOCKS * DEFAULT_BLOCK_SIZE;
export const BANNER = '<<< vmdn Virtual Disk Image >>>\n';
