/** Feature flag names (as mke2fs -O spells them), for FsInfo.details. */
import type { Ext4Super } from './superblock.js';

const COMPAT: Record<number, string> = { 0x1: 'dir_prealloc', 0x2: 'imagic_inodes', 0x4: 'has_journal', 0x8: 'ext_attr', 0x10: 'resize_inode', 0x20: 'dir_index', 0x200: 'sparse_super2', 0x400: 'fast_commit', 0x800: 'stable_inodes', 0x1000: 'orphan_file' };
const INCOMPAT: Record<number, string> = { 0x1: 'compression', 0x2: 'filetype', 0x4: 'needs_recovery', 0x8: 'journal_dev', 0x10: 'meta_bg', 0x40: 'extent', 0x80: '64bit', 0x100: 'mmp', 0x200: 'flex_bg', 0x400: 'ea_inode', 0x1000: 'dirdata', 0x2000: 'metadata_csum_seed', 0x4000: 'large_dir', 0x8000: 'inline_data', 0x10000: 'encrypt', 0x20000: 'casefold' };
const RO: Record<number, string> = { 0x1: 'sparse_super', 0x2: 'large_file', 0x8: 'huge_file', 0x10: 'uninit_bg', 0x20: 'dir_nlink', 0x40: 'extra_isize', 0x100: 'quota', 0x200: 'bigalloc', 0x400: 'metadata_csum', 0x1000: 'read-only', 0x2000: 'project', 0x8000: 'verity', 0x10000: 'orphan_present' };

function names(v: number, table: Record<number, string>): string[] {
  const out: string[] = [];
  for (let bit = 1; bit !== 0 && bit <= 0x80000000; bit = bit * 2) {
    if ((v & bit) !== 0 || (bit === 0x80000000 && v >= 0x80000000)) out.push(table[bit] ?? `0x${bit.toString(16)}`);
    if (bit === 0x80000000) break;
  }
  return out;
}

export function featureNames(sb: Ext4Super): string[] {
  return [...names(sb.compat, COMPAT), ...names(sb.incompat, INCOMPAT), ...names(sb.roCompat, RO)];
}
