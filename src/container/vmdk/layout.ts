/**
 * VMDK sparse extent layout (VMware "Virtual Disk Format 5.0", qemu
 * block/vmdk.c), described once as data: the reader and both writers use
 * these structs, so they cannot disagree on an offset. All fields are
 * little-endian; offsets and sizes in the header count 512-byte sectors.
 */
import { defineStruct } from '../../util/struct.js';

export const SECTOR = 512;
/** "KDMV" as stored (the bytes K, D, M, V): 0x564d444b read little-endian. */
export const VMDK_MAGIC = 0x564d444b;
export const DESCRIPTOR_MAGIC = '# Disk DescriptorFile';

export const FLAGS = {
  NL_DETECT: 1 << 0,
  /** A redundant grain directory (and its own grain tables) at rgdOffset. */
  REDUNDANT_GD: 1 << 1,
  /** A grain table entry of 1 means "this grain reads as zeros". */
  ZERO_GRAIN: 1 << 2,
  COMPRESSED: 1 << 16,
  MARKERS: 1 << 17,
} as const;

export const COMPRESS_NONE = 0;
export const COMPRESS_DEFLATE = 1;
/** gdOffset value meaning "the grain directory is described by the footer" (streamOptimized). */
export const GD_AT_END = 0xffffffffffffffffn;
export const GTE_ZERO = 1;

/** Header bytes 73..76 with NL_DETECT: corrupted by a text-mode transfer. */
export const NL_CHECK = [0x0a, 0x20, 0x0d, 0x0a] as const;

export const sparseHeader = defineStruct('vmdk.SparseExtentHeader', SECTOR, 'le', [
  { name: 'magic', type: 'u32', offset: 0 },
  { name: 'version', type: 'u32', offset: 4 },
  { name: 'flags', type: 'u32', offset: 8 },
  { name: 'capacity', type: 'u64', offset: 12 },
  { name: 'grainSize', type: 'u64', offset: 20 },
  { name: 'descriptorOffset', type: 'u64', offset: 28 },
  { name: 'descriptorSize', type: 'u64', offset: 36 },
  { name: 'numGTEsPerGT', type: 'u32', offset: 44 },
  { name: 'rgdOffset', type: 'u64', offset: 48 },
  { name: 'gdOffset', type: 'u64', offset: 56 },
  { name: 'overHead', type: 'u64', offset: 64 },
  { name: 'uncleanShutdown', type: 'u8', offset: 72 },
  { name: 'nlCheck', type: 'bytes:4', offset: 73 },
  { name: 'compressAlgorithm', type: 'u16', offset: 77 },
] as const);

/**
 * streamOptimized marker: a grain marker is {lba, size>0} followed by `size`
 * bytes of zlib data; a metadata marker is {numSectors, size=0, type} padded
 * to a sector, followed by numSectors of metadata (grain table, directory,
 * footer) or nothing (end of stream).
 */
export const marker = defineStruct('vmdk.Marker', 16, 'le', [
  { name: 'value', type: 'u64', offset: 0 },
  { name: 'size', type: 'u32', offset: 8 },
  { name: 'type', type: 'u32', offset: 12 },
] as const);
/** Bytes before a grain marker's compressed data (lba + size). */
export const GRAIN_MARKER_HEAD = 12;

export const MARKER = { EOS: 0, GT: 1, GD: 2, FOOTER: 3 } as const;

// Bounds: what the checks in header.ts hold every image to.
export const MAX_VERSION = 3;
/** 2^41 sectors = 1 PiB; VMware's own limit is 62 TiB, qemu's sparse extents 2 TiB. */
export const MAX_CAPACITY_SECTORS = 2 ** 41;
/** Grain size in sectors: a power of two, 512 B .. 16 MiB (qemu allows up to 1 GiB; none is made that big). */
export const MIN_GRAIN_SECTORS = 1;
export const MAX_GRAIN_SECTORS = 2 ** 15;
/** qemu refuses grain tables of more than 512 entries; VMware always writes 512. */
export const MAX_GTES_PER_GT = 512;
/** Grain directory entries: bounds the table read at open (64 MiB). */
export const MAX_GD_ENTRIES = 2 ** 24;
/** An embedded or stand-alone descriptor larger than this is not a descriptor (qemu reads at most 1 MiB). */
export const MAX_DESCRIPTOR_BYTES = 1 << 20;
/** Footer (streamOptimized): footer marker + header + end-of-stream marker. */
export const FOOTER_BYTES = 3 * SECTOR;

// Load-time checks of facts the code relies on.
if (sparseHeader.size !== SECTOR) throw new Error('vmdk: header is not one sector');
if (GRAIN_MARKER_HEAD + 4 !== marker.size) throw new Error('vmdk: marker type must follow lba + size');
