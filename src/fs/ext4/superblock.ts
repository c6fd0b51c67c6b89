/** The ext2/3/4 superblock: parsed, validated, and reduced to the geometry the reader needs. */
import { VmdnError } from '../../errors.js';
import { crc32cRaw } from './crc32c.js';
import * as L from './layout.js';

export interface Ext4Super {
  blockSize: number;
  /** Blocks per allocation cluster (bigalloc), 1 otherwise. */
  clusterRatio: number;
  blocksCount: number;
  inodesCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  clustersPerGroup: number;
  inodesPerGroup: number;
  groupCount: number;
  inodeSize: number;
  descSize: number;
  firstMetaBg: number;
  reservedGdtBlocks: number;
  logGroupsPerFlex: number;
  compat: number;
  incompat: number;
  roCompat: number;
  /** crc32c seed for metadata_csum, undefined when the fs has no metadata checksums. */
  csumSeed?: number;
  /** The uuid bytes (group descriptor crc16 seeds from them). */
  uuidBytes: Uint8Array;
  uuid: string;
  label: string;
  fsType: 'ext2' | 'ext3' | 'ext4';
  backupBgs: [number, number];
  freeBlocks: number;
  hashSeed: Uint8Array;
  defHashVersion: number;
}

const fail = (msg: string): never => {
  throw new VmdnError('E_FORMAT', `ext4 superblock: ${msg}`);
};

// Features that change the on-disk format in ways this reader cannot follow.
const UNSUPPORTED_INCOMPAT: Array<[number, string]> = [
  [0x1, 'compression'],
  [L.INCOMPAT_JOURNAL_DEV, 'external journal device (not a filesystem)'],
  [L.INCOMPAT_DIRDATA, 'dirdata'],
];

export function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function uuidString(b: Uint8Array): string {
  const h = hex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Parse the 1024 superblock bytes (read at byte 1024 of the device). */
export function parseSuperblock(buf: Uint8Array, deviceSize: number, warnings: string[]): Ext4Super {
  const s = L.SUPERBLOCK.parse(buf);
  if (s.magic !== L.EXT4_MAGIC) fail(`bad magic 0x${s.magic.toString(16)}`);
  for (const [bit, what] of UNSUPPORTED_INCOMPAT) {
    if (s.featureIncompat & bit) throw new VmdnError('E_UNSUPPORTED', `ext4: unsupported feature: ${what}`);
  }
  if (s.logBlockSize > 6) fail(`block size 2^(10+${s.logBlockSize}) out of range`);
  const blockSize = 1024 << s.logBlockSize;
  const bigalloc = (s.featureRoCompat & L.RO_COMPAT_BIGALLOC) !== 0;
  if (bigalloc && (s.logClusterSize < s.logBlockSize || s.logClusterSize > 16)) fail(`cluster size log ${s.logClusterSize} invalid`);
  const clusterRatio = bigalloc ? 1 << (s.logClusterSize - s.logBlockSize) : 1;
  const is64 = (s.featureIncompat & L.INCOMPAT_64BIT) !== 0;
  const blocksCount = s.blocksCountLo + (is64 ? s.blocksCountHi * 2 ** 32 : 0);
  if (blocksCount <= s.firstDataBlock) fail(`blocks_count ${blocksCount} <= first_data_block ${s.firstDataBlock}`);
  if (s.firstDataBlock > 1) fail(`first_data_block ${s.firstDataBlock} invalid`);
  if (blocksCount * blockSize > deviceSize) fail(`filesystem (${blocksCount} blocks of ${blockSize}) is larger than its device (${deviceSize} bytes)`);
  if (s.blocksPerGroup === 0 || s.blocksPerGroup > 8 * blockSize * clusterRatio) fail(`blocks_per_group ${s.blocksPerGroup} invalid`);
  const clustersPerGroup = bigalloc ? s.clustersPerGroup : s.blocksPerGroup;
  if (clustersPerGroup * clusterRatio !== s.blocksPerGroup) fail(`clusters_per_group ${s.clustersPerGroup} does not match blocks_per_group`);
  if (s.inodesPerGroup === 0 || s.inodesPerGroup > 8 * blockSize) fail(`inodes_per_group ${s.inodesPerGroup} invalid`);
  const groupCount = Math.ceil((blocksCount - s.firstDataBlock) / s.blocksPerGroup);
  if (s.inodesCount === 0 || s.inodesCount > groupCount * s.inodesPerGroup) fail(`inodes_count ${s.inodesCount} exceeds ${groupCount} groups * ${s.inodesPerGroup}`);
  const inodeSize = s.revLevel === 0 ? 128 : s.inodeSize;
  if (inodeSize < 128 || inodeSize > blockSize || (inodeSize & (inodeSize - 1)) !== 0) fail(`inode size ${inodeSize} invalid`);
  let descSize = 32;
  if (is64) {
    descSize = s.descSize;
    if (descSize < 64 || descSize > 1024 || (descSize & (descSize - 1)) !== 0) fail(`desc_size ${descSize} invalid for a 64bit filesystem`);
  }
  if (s.featureIncompat & L.INCOMPAT_ENCRYPT) warnings.push('ext4: filesystem has encryption enabled; encrypted files read as ciphertext');
  if (s.featureIncompat & L.INCOMPAT_RECOVER) warnings.push('ext4: journal needs recovery; reading the image as it is on disk');

  let csumSeed: number | undefined;
  if (s.featureRoCompat & L.RO_COMPAT_METADATA_CSUM) {
    if (s.checksumType !== 1) warnings.push(`ext4: unknown checksum type ${s.checksumType}`);
    const sum = crc32cRaw(0xffffffff, buf, 0, 0x3fc);
    if (sum !== s.checksum) warnings.push(`ext4: superblock checksum mismatch (stored 0x${s.checksum.toString(16)}, computed 0x${sum.toString(16)})`);
    csumSeed = s.featureIncompat & L.INCOMPAT_CSUM_SEED ? s.checksumSeed : crc32cRaw(0xffffffff, s.uuid);
  }
  const ext4Incompat = L.INCOMPAT_EXTENTS | L.INCOMPAT_64BIT | L.INCOMPAT_FLEX_BG | L.INCOMPAT_INLINE_DATA | L.INCOMPAT_EA_INODE | L.INCOMPAT_LARGEDIR | 0x2000 | 0x100;
  const ext4Ro = L.RO_COMPAT_HUGE_FILE | L.RO_COMPAT_GDT_CSUM | 0x20 | 0x40 | L.RO_COMPAT_METADATA_CSUM | L.RO_COMPAT_BIGALLOC;
  const fsType = s.featureIncompat & ext4Incompat || s.featureRoCompat & ext4Ro ? 'ext4' : s.featureCompat & 0x4 ? 'ext3' : 'ext2';
  const nul = s.volumeName.indexOf(0);
  return {
    blockSize,
    clusterRatio,
    blocksCount,
    inodesCount: s.inodesCount,
    firstDataBlock: s.firstDataBlock,
    blocksPerGroup: s.blocksPerGroup,
    clustersPerGroup,
    inodesPerGroup: s.inodesPerGroup,
    groupCount,
    inodeSize,
    descSize,
    firstMetaBg: s.firstMetaBg,
    reservedGdtBlocks: s.reservedGdtBlocks,
    logGroupsPerFlex: s.logGroupsPerFlex,
    compat: s.featureCompat,
    incompat: s.featureIncompat,
    roCompat: s.featureRoCompat,
    csumSeed,
    uuidBytes: s.uuid,
    uuid: uuidString(s.uuid),
    label: new TextDecoder().decode(nul >= 0 ? s.volumeName.subarray(0, nul) : s.volumeName),
    fsType,
    backupBgs: [s.backupBg0, s.backupBg1],
    freeBlocks: s.freeBlocksLo + (is64 ? s.freeBlocksHi * 2 ** 32 : 0),
    hashSeed: s.hashSeed,
    defHashVersion: s.defHashVersion,
  };
}

function isPowerOf(n: number, b: number): boolean {
  while (n > 1 && n % b === 0) n /= b;
  return n === 1;
}

/** Whether group `g` carries a superblock backup (sparse_super: 0, 1, powers of 3, 5, 7). */
export function groupHasSuper(sb: Ext4Super, g: number): boolean {
  if (g === 0) return true;
  if (sb.compat & L.COMPAT_SPARSE_SUPER2) return g === sb.backupBgs[0] || g === sb.backupBgs[1];
  if (g <= 1 || !(sb.roCompat & L.RO_COMPAT_SPARSE_SUPER)) return true;
  if (g % 2 === 0) return false;
  return isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7);
}

export const descsPerBlock = (sb: Ext4Super): number => sb.blockSize / sb.descSize;
export const groupFirstBlock = (sb: Ext4Super, g: number): number => sb.firstDataBlock + g * sb.blocksPerGroup;

/** Block holding descriptor block `i` of the group descriptor table (meta_bg moves later ones). */
export function descBlockLocation(sb: Ext4Super, i: number): number {
  if (!(sb.incompat & L.INCOMPAT_META_BG) || i < sb.firstMetaBg) return sb.firstDataBlock + 1 + i;
  const g = i * descsPerBlock(sb);
  return groupFirstBlock(sb, g) + (groupHasSuper(sb, g) ? 1 : 0);
}

/** Blocks at the start of group `g` used by superblock + descriptor (+ reserved GDT) copies. */
export function baseMetaBlocks(sb: Ext4Super, g: number): number {
  if (!groupHasSuper(sb, g)) {
    if (!(sb.incompat & L.INCOMPAT_META_BG)) return 0;
  }
  const sup = groupHasSuper(sb, g) ? 1 : 0;
  const dpb = descsPerBlock(sb);
  const gdtBlocks = Math.ceil(sb.groupCount / dpb);
  if (!(sb.incompat & L.INCOMPAT_META_BG)) return sup + gdtBlocks + sb.reservedGdtBlocks;
  const metaGroup = Math.floor(g / dpb);
  let n = sup;
  if (metaGroup < sb.firstMetaBg) n += sup ? Math.min(gdtBlocks, sb.firstMetaBg) + sb.reservedGdtBlocks : 0;
  else {
    const first = metaGroup * dpb;
    if (g === first || g === first + 1 || g === first + dpb - 1) n += 1;
  }
  return n;
}
