/**
 * ext2/3/4 on-disk layouts (little-endian), described once as data. Offsets
 * follow linux Documentation/filesystems/ext4 and fs/ext4/ext4.h. Only the
 * fields the reader uses are listed; defineStruct checks them at load.
 */
import { defineStruct } from '../../util/struct.js';

export const EXT4_MAGIC = 0xef53;
export const EXTENT_MAGIC = 0xf30a;
export const XATTR_MAGIC = 0xea020000;
export const SUPERBLOCK_OFFSET = 1024;

export const SUPERBLOCK = defineStruct('ext4_super_block', 1024, 'le', [
  { name: 'inodesCount', type: 'u32', offset: 0x0 },
  { name: 'blocksCountLo', type: 'u32', offset: 0x4 },
  { name: 'freeBlocksLo', type: 'u32', offset: 0xc },
  { name: 'freeInodes', type: 'u32', offset: 0x10 },
  { name: 'firstDataBlock', type: 'u32', offset: 0x14 },
  { name: 'logBlockSize', type: 'u32', offset: 0x18 },
  { name: 'logClusterSize', type: 'u32', offset: 0x1c },
  { name: 'blocksPerGroup', type: 'u32', offset: 0x20 },
  { name: 'clustersPerGroup', type: 'u32', offset: 0x24 },
  { name: 'inodesPerGroup', type: 'u32', offset: 0x28 },
  { name: 'magic', type: 'u16', offset: 0x38 },
  { name: 'revLevel', type: 'u32', offset: 0x4c },
  { name: 'firstIno', type: 'u32', offset: 0x54 },
  { name: 'inodeSize', type: 'u16', offset: 0x58 },
  { name: 'featureCompat', type: 'u32', offset: 0x5c },
  { name: 'featureIncompat', type: 'u32', offset: 0x60 },
  { name: 'featureRoCompat', type: 'u32', offset: 0x64 },
  { name: 'uuid', type: 'bytes:16', offset: 0x68 },
  { name: 'volumeName', type: 'bytes:16', offset: 0x78 },
  { name: 'reservedGdtBlocks', type: 'u16', offset: 0xce },
  { name: 'hashSeed', type: 'bytes:16', offset: 0xec },
  { name: 'defHashVersion', type: 'u8', offset: 0xfc },
  { name: 'descSize', type: 'u16', offset: 0xfe },
  { name: 'firstMetaBg', type: 'u32', offset: 0x104 },
  { name: 'blocksCountHi', type: 'u32', offset: 0x150 },
  { name: 'freeBlocksHi', type: 'u32', offset: 0x158 },
  { name: 'logGroupsPerFlex', type: 'u8', offset: 0x174 },
  { name: 'checksumType', type: 'u8', offset: 0x175 },
  { name: 'backupBg0', type: 'u32', offset: 0x24c },
  { name: 'backupBg1', type: 'u32', offset: 0x250 },
  { name: 'checksumSeed', type: 'u32', offset: 0x270 },
  { name: 'checksum', type: 'u32', offset: 0x3fc },
]);

/** The first 32 bytes of a group descriptor (all an ext2/3 or non-64bit fs has). */
export const GROUP_DESC_LO = defineStruct('ext4_group_desc', 32, 'le', [
  { name: 'blockBitmapLo', type: 'u32', offset: 0x0 },
  { name: 'inodeBitmapLo', type: 'u32', offset: 0x4 },
  { name: 'inodeTableLo', type: 'u32', offset: 0x8 },
  { name: 'flags', type: 'u16', offset: 0x12 },
  { name: 'checksum', type: 'u16', offset: 0x1e },
]);

/** The 64bit feature's upper halves (desc_size >= 64). */
export const GROUP_DESC_HI = defineStruct('ext4_group_desc_hi', 32, 'le', [
  { name: 'blockBitmapHi', type: 'u32', offset: 0x0 },
  { name: 'inodeBitmapHi', type: 'u32', offset: 0x4 },
  { name: 'inodeTableHi', type: 'u32', offset: 0x8 },
]);

/** The 128-byte "good old" inode. */
export const INODE = defineStruct('ext4_inode', 128, 'le', [
  { name: 'mode', type: 'u16', offset: 0x0 },
  { name: 'uidLo', type: 'u16', offset: 0x2 },
  { name: 'sizeLo', type: 'u32', offset: 0x4 },
  { name: 'atime', type: 'u32', offset: 0x8 },
  { name: 'ctime', type: 'u32', offset: 0xc },
  { name: 'mtime', type: 'u32', offset: 0x10 },
  { name: 'dtime', type: 'u32', offset: 0x14 },
  { name: 'gidLo', type: 'u16', offset: 0x18 },
  { name: 'linksCount', type: 'u16', offset: 0x1a },
  { name: 'blocksLo', type: 'u32', offset: 0x1c },
  { name: 'flags', type: 'u32', offset: 0x20 },
  { name: 'block', type: 'bytes:60', offset: 0x28 },
  { name: 'generation', type: 'u32', offset: 0x64 },
  { name: 'fileAclLo', type: 'u32', offset: 0x68 },
  { name: 'sizeHigh', type: 'u32', offset: 0x6c },
  { name: 'blocksHi', type: 'u16', offset: 0x74 },
  { name: 'fileAclHi', type: 'u16', offset: 0x76 },
  { name: 'uidHi', type: 'u16', offset: 0x78 },
  { name: 'gidHi', type: 'u16', offset: 0x7a },
  { name: 'checksumLo', type: 'u16', offset: 0x7c },
]);

/** Fields past 128 bytes; valid only up to 128 + i_extra_isize. Offsets relative to 128. */
export const INODE_EXTRA = defineStruct('ext4_inode_extra', 32, 'le', [
  { name: 'extraIsize', type: 'u16', offset: 0x0 },
  { name: 'checksumHi', type: 'u16', offset: 0x2 },
  { name: 'ctimeExtra', type: 'u32', offset: 0x4 },
  { name: 'mtimeExtra', type: 'u32', offset: 0x8 },
  { name: 'atimeExtra', type: 'u32', offset: 0xc },
  { name: 'crtime', type: 'u32', offset: 0x10 },
  { name: 'crtimeExtra', type: 'u32', offset: 0x14 },
]);

export const EXTENT_HEADER = defineStruct('ext4_extent_header', 12, 'le', [
  { name: 'magic', type: 'u16', offset: 0 },
  { name: 'entries', type: 'u16', offset: 2 },
  { name: 'max', type: 'u16', offset: 4 },
  { name: 'depth', type: 'u16', offset: 6 },
]);

export const EXTENT_INDEX = defineStruct('ext4_extent_idx', 12, 'le', [
  { name: 'block', type: 'u32', offset: 0 },
  { name: 'leafLo', type: 'u32', offset: 4 },
  { name: 'leafHi', type: 'u16', offset: 8 },
]);

export const EXTENT_LEAF = defineStruct('ext4_extent', 12, 'le', [
  { name: 'block', type: 'u32', offset: 0 },
  { name: 'len', type: 'u16', offset: 4 },
  { name: 'startHi', type: 'u16', offset: 6 },
  { name: 'startLo', type: 'u32', offset: 8 },
]);

/** ext4_dir_entry_2; without the filetype feature name_len is 16 bits (file_type is its high byte). */
export const DIRENT = defineStruct('ext4_dir_entry_2', 8, 'le', [
  { name: 'inode', type: 'u32', offset: 0 },
  { name: 'recLen', type: 'u16', offset: 4 },
  { name: 'nameLen', type: 'u8', offset: 6 },
  { name: 'fileType', type: 'u8', offset: 7 },
]);

/** The metadata_csum tail of a leaf directory block (a fake entry with file_type 0xDE). */
export const DIRENT_TAIL = defineStruct('ext4_dir_entry_tail', 12, 'le', [
  { name: 'zero1', type: 'u32', offset: 0 },
  { name: 'recLen', type: 'u16', offset: 4 },
  { name: 'zero2', type: 'u8', offset: 6 },
  { name: 'fileType', type: 'u8', offset: 7 },
  { name: 'checksum', type: 'u32', offset: 8 },
]);

export const XATTR_BLOCK_HEADER = defineStruct('ext4_xattr_header', 32, 'le', [
  { name: 'magic', type: 'u32', offset: 0x0 },
  { name: 'refcount', type: 'u32', offset: 0x4 },
  { name: 'blocks', type: 'u32', offset: 0x8 },
  { name: 'hash', type: 'u32', offset: 0xc },
  { name: 'checksum', type: 'u32', offset: 0x10 },
]);

export const XATTR_ENTRY = defineStruct('ext4_xattr_entry', 16, 'le', [
  { name: 'nameLen', type: 'u8', offset: 0x0 },
  { name: 'nameIndex', type: 'u8', offset: 0x1 },
  { name: 'valueOffs', type: 'u16', offset: 0x2 },
  { name: 'valueInum', type: 'u32', offset: 0x4 },
  { name: 'valueSize', type: 'u32', offset: 0x8 },
  { name: 'hash', type: 'u32', offset: 0xc },
]);

// Feature bits the reader looks at.
export const COMPAT_DIR_INDEX = 0x20;
export const COMPAT_SPARSE_SUPER2 = 0x200;
export const INCOMPAT_FILETYPE = 0x2;
export const INCOMPAT_RECOVER = 0x4;
export const INCOMPAT_JOURNAL_DEV = 0x8;
export const INCOMPAT_META_BG = 0x10;
export const INCOMPAT_EXTENTS = 0x40;
export const INCOMPAT_64BIT = 0x80;
export const INCOMPAT_FLEX_BG = 0x200;
export const INCOMPAT_EA_INODE = 0x400;
export const INCOMPAT_DIRDATA = 0x1000;
export const INCOMPAT_CSUM_SEED = 0x2000;
export const INCOMPAT_LARGEDIR = 0x4000;
export const INCOMPAT_INLINE_DATA = 0x8000;
export const INCOMPAT_ENCRYPT = 0x10000;
export const INCOMPAT_CASEFOLD = 0x20000;
export const RO_COMPAT_SPARSE_SUPER = 0x1;
export const RO_COMPAT_HUGE_FILE = 0x8;
export const RO_COMPAT_GDT_CSUM = 0x10;
export const RO_COMPAT_BIGALLOC = 0x200;
export const RO_COMPAT_METADATA_CSUM = 0x400;

// Group descriptor flags.
export const BG_INODE_UNINIT = 0x1;
export const BG_BLOCK_UNINIT = 0x2;

// Inode flags.
export const INODE_INDEX_FL = 0x1000;
export const INODE_HUGE_FILE_FL = 0x40000;
export const INODE_EXTENTS_FL = 0x80000;
export const INODE_EA_INODE_FL = 0x200000;
export const INODE_INLINE_DATA_FL = 0x10000000;
