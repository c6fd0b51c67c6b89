/**
 * The creation parameters of an ext2/3/4 filesystem: what the files strategy
 * records so `mke2fs` can make the same filesystem again, and the mke2fs /
 * debugfs arguments that do it. Captured from the superblock, not guessed.
 */
import type { Disk } from '../../container/disk.js';
import { featureNames } from './features.js';
import { hex } from './superblock.js';
import type { Ext4Fs } from './ext4.js';
import { VmdnError } from '../../errors.js';

export interface Ext4Params {
  fsType: 'ext2' | 'ext3' | 'ext4';
  uuid: string;
  label: string;
  blockSize: number;
  blocksCount: number;
  inodeSize: number;
  inodesCount: number;
  blocksPerGroup: number;
  /** Groups per flex group (0: no flex_bg). */
  flexBgSize: number;
  features: string[];
  /** 32 hex digits. */
  hashSeed: string;
  defHashVersion: number;
  reservedBlocks: number;
  journalBlocks: number;
  /** s_default_mount_opts, s_errors, s_max_mnt_count, s_checkinterval, s_creator_os as stored. */
  defaultMountOpts: number;
  errors: number;
  maxMountCount: number;
  checkInterval: number;
}

/** Features mke2fs sets from other options, or that describe state rather than format. */
const NOT_A_MKFS_FEATURE = new Set(['needs_recovery', 'orphan_present', 'journal_dev', 'read-only', 'mmp', 'compression', 'dirdata', 'imagic_inodes', 'dir_prealloc']);

export async function ext4Params(fs: Ext4Fs, dev: Disk): Promise<Ext4Params> {
  const sb = fs.superblock;
  const raw = await dev.read(1024, 1024);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const u32 = (o: number) => dv.getUint32(o, true);
  const is64 = featureNames(sb).includes('64bit');
  const journalInum = u32(0xe0);
  let journalBlocks = 0;
  if (journalInum) journalBlocks = Math.ceil((await fs.stat(journalInum)).size / sb.blockSize);
  return {
    fsType: sb.fsType,
    uuid: sb.uuid,
    label: sb.label,
    blockSize: sb.blockSize,
    blocksCount: sb.blocksCount,
    inodeSize: sb.inodeSize,
    inodesCount: sb.inodesCount,
    blocksPerGroup: sb.blocksPerGroup,
    flexBgSize: sb.logGroupsPerFlex ? 2 ** sb.logGroupsPerFlex : 0,
    features: featureNames(sb).filter((f) => !NOT_A_MKFS_FEATURE.has(f)),
    hashSeed: hex(sb.hashSeed),
    defHashVersion: sb.defHashVersion,
    reservedBlocks: u32(0x8) + (is64 ? u32(0x154) * 2 ** 32 : 0),
    journalBlocks,
    defaultMountOpts: u32(0x100),
    errors: dv.getUint16(0x3c, true),
    maxMountCount: dv.getInt16(0x36, true),
    checkInterval: u32(0x44),
  };
}

const isInt = (n: unknown, min: number, max: number) => typeof n === 'number' && Number.isSafeInteger(n) && n >= min && n <= max;

/** Manifest data is untrusted: every value goes onto a command line, so all are checked. */
export function validateExt4Params(p: Ext4Params, length: number): void {
  const bad = (what: string): never => {
    throw new VmdnError('E_MANIFEST', `ext4 parameters: bad ${what}`);
  };
  if (!p || typeof p !== 'object') bad('record');
  if (!['ext2', 'ext3', 'ext4'].includes(p.fsType)) bad('fsType');
  if (typeof p.uuid !== 'string' || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(p.uuid)) bad('uuid');
  if (typeof p.label !== 'string' || Buffer.byteLength(p.label) > 16 || p.label.includes('\0')) bad('label');
  if (![1024, 2048, 4096, 8192, 16384, 32768, 65536].includes(p.blockSize)) bad('blockSize');
  if (!isInt(p.blocksCount, 64, 2 ** 48) || p.blocksCount * p.blockSize > length) bad('blocksCount');
  if (![128, 256, 512, 1024].includes(p.inodeSize) || p.inodeSize > p.blockSize) bad('inodeSize');
  if (!isInt(p.inodesCount, 16, 2 ** 32 - 1)) bad('inodesCount');
  if (!isInt(p.blocksPerGroup, 256, 8 * p.blockSize)) bad('blocksPerGroup');
  if (!isInt(p.flexBgSize, 0, 2 ** 31)) bad('flexBgSize');
  if (!Array.isArray(p.features) || p.features.length > 64 || !p.features.every((f) => typeof f === 'string' && /^[a-z0-9_]{1,32}$/.test(f))) bad('features');
  if (typeof p.hashSeed !== 'string' || !/^[0-9a-f]{32}$/.test(p.hashSeed)) bad('hashSeed');
  if (!isInt(p.defHashVersion, 0, 5)) bad('defHashVersion');
  if (!isInt(p.reservedBlocks, 0, p.blocksCount)) bad('reservedBlocks');
  if (!isInt(p.journalBlocks, 0, p.blocksCount)) bad('journalBlocks');
  for (const k of ['defaultMountOpts', 'checkInterval'] as const) if (!isInt(p[k], 0, 2 ** 32 - 1)) bad(k);
  if (!isInt(p.errors, 0, 3)) bad('errors');
  if (!isInt(p.maxMountCount, -1, 65535)) bad('maxMountCount');
}

const uuidOfHex = (h: string) => `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;

/** mke2fs arguments (before `-d STAGE IMAGE BLOCKS`) that recreate the filesystem's format. */
export function mke2fsArgs(p: Ext4Params, offset = 0): string[] {
  const args = ['-q', '-F', '-t', p.fsType, '-O', ['none', ...p.features].join(','), '-b', String(p.blockSize), '-I', String(p.inodeSize), '-N', String(p.inodesCount), '-g', String(p.blocksPerGroup), '-U', p.uuid, '-L', p.label, '-m', '0'];
  if (p.flexBgSize) args.push('-G', String(p.flexBgSize));
  if (p.journalBlocks) args.push('-J', `size=${Math.max(1, Math.round((p.journalBlocks * p.blockSize) / 2 ** 20))}`);
  // offset: make the filesystem in place, inside a disk image being written
  args.push('-E', `hash_seed=${uuidOfHex(p.hashSeed)},root_owner=0:0,lazy_itable_init=0,nodiscard${offset ? `,offset=${offset}` : ''}`);
  return args;
}

/** debugfs `ssv` commands for what mke2fs has no option for. */
export function superblockFixups(p: Ext4Params): string[] {
  return [
    `ssv r_blocks_count ${p.reservedBlocks}`,
    `ssv def_hash_version ${p.defHashVersion}`,
    `ssv default_mount_opts ${p.defaultMountOpts}`,
    `ssv errors ${p.errors}`,
    `ssv max_mnt_count ${p.maxMountCount}`,
    `ssv checkinterval ${p.checkInterval}`,
  ];
}
