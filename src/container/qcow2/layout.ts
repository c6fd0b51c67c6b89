/**
 * qcow2 on-disk layout (qemu docs/interop/qcow2.rst), described once and used
 * by both the reader and the writer. All fields are big-endian.
 */
import { defineStruct } from '../../util/struct.js';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"

/** Fields common to v2 and v3 (72 bytes), then the v3 extension up to 112. */
export const qcow2Header = defineStruct('qcow2Header', 112, 'be', [
  { name: 'magic', type: 'u32', offset: 0 },
  { name: 'version', type: 'u32', offset: 4 },
  { name: 'backingFileOffset', type: 'u64', offset: 8 },
  { name: 'backingFileSize', type: 'u32', offset: 16 },
  { name: 'clusterBits', type: 'u32', offset: 20 },
  { name: 'size', type: 'u64', offset: 24 },
  { name: 'cryptMethod', type: 'u32', offset: 32 },
  { name: 'l1Size', type: 'u32', offset: 36 },
  { name: 'l1TableOffset', type: 'u64', offset: 40 },
  { name: 'refcountTableOffset', type: 'u64', offset: 48 },
  { name: 'refcountTableClusters', type: 'u32', offset: 56 },
  { name: 'nbSnapshots', type: 'u32', offset: 60 },
  { name: 'snapshotsOffset', type: 'u64', offset: 64 },
  // version 3 only
  { name: 'incompatibleFeatures', type: 'u64', offset: 72 },
  { name: 'compatibleFeatures', type: 'u64', offset: 80 },
  { name: 'autoclearFeatures', type: 'u64', offset: 88 },
  { name: 'refcountOrder', type: 'u32', offset: 96 },
  { name: 'headerLength', type: 'u32', offset: 100 },
  { name: 'compressionType', type: 'u8', offset: 104 },
] as const);

export const QCOW2_V2_HEADER_SIZE = 72;
export const QCOW2_V3_MIN_HEADER_SIZE = 104;

/** Header extension: type, length, then data padded to a multiple of 8. */
export const qcow2ExtensionHeader = defineStruct('qcow2ExtensionHeader', 8, 'be', [
  { name: 'type', type: 'u32', offset: 0 },
  { name: 'length', type: 'u32', offset: 4 },
] as const);

export const EXT = {
  END: 0x00000000,
  BACKING_FORMAT: 0xe2792aca,
  FEATURE_NAMES: 0x6803f857,
  BITMAPS: 0x23852875,
  FULL_DISK_ENCRYPTION: 0x0537be77,
  EXTERNAL_DATA_FILE: 0x44415441,
} as const;

/** Incompatible feature bits. */
export const INCOMPAT = {
  DIRTY: 1n << 0n,
  CORRUPT: 1n << 1n,
  EXTERNAL_DATA_FILE: 1n << 2n,
  COMPRESSION_TYPE: 1n << 3n,
  EXTENDED_L2: 1n << 4n,
} as const;
export const INCOMPAT_KNOWN = INCOMPAT.DIRTY | INCOMPAT.CORRUPT | INCOMPAT.EXTERNAL_DATA_FILE | INCOMPAT.COMPRESSION_TYPE | INCOMPAT.EXTENDED_L2;

export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;

export const COMPRESSION = { DEFLATE: 0, ZSTD: 1 } as const;

/** L1 entry: bits 9..55 hold the L2 table offset; bit 63 "copied" (refcount == 1). */
export const L1_OFFSET_MASK = 0x00fffffffffffe00n;
/** Standard L2 entry: bits 9..55 host cluster offset. */
export const L2_OFFSET_MASK = 0x00fffffffffffe00n;
export const L2_ZERO_FLAG = 1n << 0n;
export const L2_COMPRESSED_FLAG = 1n << 62n;
export const COPIED_FLAG = 1n << 63n;
/** Bits 56..61 (and 1..8 for uncompressed entries) are reserved and must be zero. */
export const L1_RESERVED_MASK = 0x7f000000000001ffn;
export const L2_STD_RESERVED_MASK = 0x3f000000000001fen;

/** Extended L2: 32 subclusters per cluster; bitmap low half = allocated, high half = reads as zero. */
export const SUBCLUSTERS = 32;

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
/** Sane ceiling on the virtual size we accept (qemu's own limit is 32 MiB * 2^? ; 64 TiB is plenty). */
export const MAX_VIRTUAL_SIZE = 64 * 2 ** 40;
export const MAX_BACKING_DEPTH = 16;
export const MAX_BACKING_NAME = 1023;

/** Compressed L2 entry: host offset in the low (62 - (clusterBits - 8)) bits, then extra 512-byte sectors. */
export function compressedFields(entry: bigint, clusterBits: number): { hostOffset: number; sectors: number } {
  const x = BigInt(62 - (clusterBits - 8));
  const offMask = (1n << x) - 1n;
  const hostOffset = Number(entry & offMask);
  const nbSectorsMinus1 = Number((entry >> x) & ((1n << BigInt(clusterBits - 8)) - 1n));
  return { hostOffset, sectors: nbSectorsMinus1 + 1 };
}

export function encodeCompressedEntry(hostOffset: number, byteLength: number, clusterBits: number): bigint {
  const x = BigInt(62 - (clusterBits - 8));
  // number of 512-byte sectors touched, counted from the sector containing hostOffset
  const firstSector = Math.floor(hostOffset / 512);
  const lastSector = Math.floor((hostOffset + byteLength - 1) / 512);
  const extra = BigInt(lastSector - firstSector);
  return L2_COMPRESSED_FLAG | (extra << x) | BigInt(hostOffset);
}

// ---- Reader limits and extra constants (added by the qcow2 reader) ----

/** qemu's own cap: a 32 MiB L1 table (4 Mi entries); anything larger is corrupt or hostile. */
export const MAX_L1_ENTRIES = (32 << 20) / 8;
/** qemu's cap on the refcount table (8 MiB). */
export const MAX_REFTABLE_BYTES = 8 << 20;
/** qemu's cap on internal snapshots. */
export const MAX_SNAPSHOTS = 65536;
/** L1/L2 offsets are 56-bit; a larger host offset is a format error, not a truncation. */
export const MAX_HOST_OFFSET = 2 ** 56;
/** Extended L2 entries need at least 16 KiB clusters (512-byte subclusters). */
export const EXTENDED_L2_MIN_CLUSTER_BITS = 14;
/** qemu stores the backing format in a 16-byte buffer (15 chars + NUL). */
export const MAX_BACKING_FORMAT_NAME = 15;
/** Size of one feature name table entry. */
export const FEATURE_NAME_ENTRY_SIZE = 48;
/** Extended L2 entry: bit 0 of the descriptor is reserved too (no zero flag). */
export const L2_EXT_RESERVED_MASK = 0x3f000000000001ffn;
