/** Inodes: located through the group descriptors, read table-chunk-wise through an LRU, checksummed, decoded. */
import { VmdnError } from '../../errors.js';
import * as L from './layout.js';
import { crc32cRaw, crc32cU32 } from './crc32c.js';
import { Lru, formatError, type Ext4Io } from './io.js';
import { inodeTableBlocks, type GroupDescs } from './groups.js';
import type { FsNode, NodeType, Timestamp } from '../types.js';

export interface Inode {
  ino: number;
  mode: number;
  type: NodeType;
  uid: number;
  gid: number;
  size: number;
  links: number;
  flags: number;
  /** i_block: extent root, block pointers, inline data or a fast symlink target. */
  block: Uint8Array;
  generation: number;
  fileAcl: number;
  /** Allocated 512-byte sectors (fs blocks converted for HUGE_FILE_FL). */
  sectors: number;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
  crtime?: Timestamp;
  /** The full on-disk inode (in-inode xattrs live past 128 + extra_isize). */
  raw: Uint8Array;
  extraIsize: number;
  /** Per-inode checksum seed (metadata_csum) for extent, directory blocks. */
  csumSeed?: number;
}

const TYPES: Record<number, NodeType> = { 0x1: 'fifo', 0x2: 'chardev', 0x4: 'dir', 0x6: 'blockdev', 0x8: 'file', 0xa: 'symlink', 0xc: 'socket' };

// Inode tables are read in chunks of this many bytes: neighbours in a directory usually share one.
const CHUNK_BYTES = 64 * 1024;

function time(sec: number, extra: number | undefined): Timestamp {
  const s = sec | 0; // seconds are signed 32-bit; the extra epoch bits extend them
  if (extra === undefined) return { sec: s, nsec: 0 };
  return { sec: s + (extra & 3) * 2 ** 32, nsec: extra >>> 2 };
}

export class InodeTable {
  private readonly cache = new Lru<number, Uint8Array>(256);
  private readonly chunkBlocks: number;
  private readonly tableBlocks: number;
  constructor(
    private readonly io: Ext4Io,
    private readonly gd: GroupDescs,
  ) {
    this.tableBlocks = inodeTableBlocks(io);
    this.chunkBlocks = Math.max(1, Math.floor(CHUNK_BYTES / io.bs));
  }

  /** Byte offset of an inode on the device (for the files strategy's inode patcher). */
  locate(ino: number): number {
    const sb = this.io.sb;
    if (!Number.isInteger(ino) || ino < 1 || ino > sb.inodesCount) throw formatError(undefined, `inode number ${ino} out of range [1, ${sb.inodesCount}]`, { ino });
    const g = Math.floor((ino - 1) / sb.inodesPerGroup);
    return this.gd.inodeTable[g]! * this.io.bs + ((ino - 1) % sb.inodesPerGroup) * sb.inodeSize;
  }

  private async rawInode(ino: number): Promise<Uint8Array> {
    const sb = this.io.sb;
    if (!Number.isInteger(ino) || ino < 1 || ino > sb.inodesCount) throw formatError(undefined, `inode number ${ino} out of range [1, ${sb.inodesCount}]`, { ino });
    const g = Math.floor((ino - 1) / sb.inodesPerGroup);
    if ((sb.csumSeed !== undefined || sb.roCompat & L.RO_COMPAT_GDT_CSUM) && this.gd.flags[g] & L.BG_INODE_UNINIT) throw formatError(ino, `lies in group ${g} whose inode table is uninitialized`);
    const byteInTable = ((ino - 1) % sb.inodesPerGroup) * sb.inodeSize;
    const blockInTable = Math.floor(byteInTable / this.io.bs);
    const chunk = Math.floor(blockInTable / this.chunkBlocks);
    const key = g * 65536 + chunk; // chunks per group < 65536: tables are at most 8*bs inodes
    let buf = this.cache.get(key);
    if (!buf) {
      const first = chunk * this.chunkBlocks;
      const n = Math.min(this.chunkBlocks, this.tableBlocks - first);
      buf = await this.io.readBlocks(this.gd.inodeTable[g] + first, n, `group ${g} inode table`);
      this.cache.set(key, buf);
    }
    const off = byteInTable - chunk * this.chunkBlocks * this.io.bs;
    return buf.subarray(off, off + sb.inodeSize);
  }

  async get(ino: number): Promise<Inode> {
    const raw = await this.rawInode(ino);
    const sb = this.io.sb;
    const d = L.INODE.parse(raw);
    if (d.mode === 0) throw formatError(ino, 'is not in use (mode 0)');
    const type = TYPES[d.mode >>> 12];
    if (!type) throw formatError(ino, `unknown file type in mode 0o${d.mode.toString(8)}`);
    let extraIsize = 0;
    let ex: ReturnType<typeof L.INODE_EXTRA.parse> | undefined;
    if (sb.inodeSize > 128) {
      extraIsize = raw[128] | (raw[129] << 8);
      if (extraIsize % 4 !== 0 || 128 + extraIsize > sb.inodeSize) throw formatError(ino, `extra_isize ${extraIsize} invalid for ${sb.inodeSize}-byte inodes`);
      const pad = new Uint8Array(L.INODE_EXTRA.size);
      pad.set(raw.subarray(128, 128 + Math.min(extraIsize, pad.length)));
      ex = L.INODE_EXTRA.parse(pad);
    }
    const has = (end: number): boolean => extraIsize >= end; // field valid if it ends within extra_isize
    const is64 = (sb.incompat & L.INCOMPAT_64BIT) !== 0;
    if (d.sizeHigh >= 2 ** 21) throw formatError(ino, `size ${d.sizeHigh} * 2^32 exceeds 2^53`);
    const hugeBlocks = (sb.roCompat & L.RO_COMPAT_HUGE_FILE) !== 0;
    let sectors = d.blocksLo + (hugeBlocks ? d.blocksHi * 2 ** 32 : 0);
    if (hugeBlocks && d.flags & L.INODE_HUGE_FILE_FL) sectors *= sb.blockSize / 512;
    let csumSeed: number | undefined;
    if (sb.csumSeed !== undefined) {
      csumSeed = crc32cU32(crc32cU32(sb.csumSeed, ino), d.generation);
      this.verify(ino, raw, csumSeed, d.checksumLo, ex && has(4) ? ex.checksumHi : undefined);
    }
    return {
      ino,
      mode: d.mode,
      type,
      uid: d.uidLo | (d.uidHi << 16),
      gid: d.gidLo | (d.gidHi << 16),
      size: d.sizeLo + d.sizeHigh * 2 ** 32,
      links: d.linksCount,
      flags: d.flags,
      block: d.block,
      generation: d.generation,
      fileAcl: d.fileAclLo + (is64 ? d.fileAclHi * 2 ** 32 : 0),
      sectors,
      atime: time(d.atime, ex && has(0x10) ? ex.atimeExtra : undefined),
      mtime: time(d.mtime, ex && has(0xc) ? ex.mtimeExtra : undefined),
      ctime: time(d.ctime, ex && has(0x8) ? ex.ctimeExtra : undefined),
      crtime: ex && has(0x14) ? time(ex.crtime, has(0x18) ? ex.crtimeExtra : undefined) : undefined,
      raw,
      extraIsize,
      csumSeed,
    };
  }

  private verify(ino: number, raw: Uint8Array, seed: number, lo: number, hi: number | undefined): void {
    const stored = hi !== undefined ? (lo | (hi << 16)) >>> 0 : lo;
    const computed = inodeChecksum(raw, seed, hi !== undefined);
    if (stored !== computed) this.io.warn(`ext4 inode ${ino}: checksum mismatch (stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`);
  }
}

/** Checksum over the whole inode with both checksum fields zeroed; 16 bits unless i_checksum_hi exists. */
export function inodeChecksum(raw: Uint8Array, seed: number, hasHi: boolean): number {
  const z = new Uint8Array(2);
  let c = crc32cRaw(seed, raw, 0, 0x7c);
  c = crc32cRaw(c, z);
  if (hasHi) {
    c = crc32cRaw(c, raw, 0x7e, 0x82);
    c = crc32cRaw(c, z);
    c = crc32cRaw(c, raw, 0x84, raw.length);
    return c >>> 0;
  }
  c = crc32cRaw(c, raw, 0x7e, raw.length);
  return c & 0xffff;
}

/** Recompute and store a raw inode's checksum (metadata_csum), for the files strategy's inode patchers. */
export function writeInodeChecksum(raw: Buffer, fsSeed: number, ino: number): void {
  const hasHi = raw.length > 128 && raw.readUInt16LE(128) >= 4;
  const c = inodeChecksum(raw, crc32cU32(crc32cU32(fsSeed, ino), raw.readUInt32LE(0x64)), hasHi);
  raw.writeUInt16LE(c & 0xffff, 0x7c);
  if (hasHi) raw.writeUInt16LE(c >>> 16, 128 + 2);
}

/** Device numbers from i_block: old 8:8 encoding in word 0, new 12:20 encoding in word 1. */
function rdev(block: Uint8Array): { major: number; minor: number } {
  const dv = new DataView(block.buffer, block.byteOffset, 8);
  const old = dv.getUint32(0, true);
  if (old !== 0) return { major: (old >>> 8) & 0xff, minor: old & 0xff };
  const n = dv.getUint32(4, true);
  return { major: (n & 0xfff00) >>> 8, minor: (n & 0xff) | ((n >>> 12) & 0xfff00) };
}

export function toFsNode(i: Inode): FsNode {
  const node: FsNode = {
    ino: i.ino,
    type: i.type,
    perm: i.mode & 0o7777,
    uid: i.uid,
    gid: i.gid,
    size: i.size,
    nlink: i.links,
    atime: i.atime,
    mtime: i.mtime,
    ctime: i.ctime,
  };
  if (i.crtime) node.crtime = i.crtime;
  if (i.type === 'chardev' || i.type === 'blockdev') node.rdev = rdev(i.block);
  return node;
}

export function isVmdnFormat(err: unknown): boolean {
  return err instanceof VmdnError && err.code === 'E_FORMAT';
}
