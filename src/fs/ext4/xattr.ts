/**
 * Extended attributes: in the inode (after i_extra_isize) and in one
 * external block (i_file_acl). Offsets and sizes are checked against their
 * region; POSIX ACLs are converted from ext4's compact form to the xattr
 * form getfattr shows, as the kernel and debugfs do.
 */
import * as L from './layout.js';
import { crc32cRaw, crc32cU64 } from './crc32c.js';
import { formatError, type Ext4Io } from './io.js';
import type { Inode } from './inode.js';

const PREFIX: Record<number, string> = {
  1: 'user.',
  2: 'system.posix_acl_access',
  3: 'system.posix_acl_default',
  4: 'trusted.',
  6: 'security.',
  7: 'system.',
  8: 'system.richacl',
};

export interface RawXattr {
  name: string;
  /** Inline value, or the inode holding it (ea_inode feature). */
  value?: Uint8Array;
  valueInum?: number;
  valueSize: number;
}

/**
 * Entries from `start` (4-byte aligned, ending at a zero u32) with values at
 * valueBase + e_value_offs, all inside [0, end) of `buf`.
 */
function parseEntries(buf: Uint8Array, start: number, valueBase: number, end: number, ino: number, where: string): RawXattr[] {
  const out: RawXattr[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  let off = start;
  while (off + 4 <= end && dv.getUint32(off, true) !== 0) {
    if (off + L.XATTR_ENTRY.size > end) throw formatError(ino, `${where}: xattr entry at ${off} runs past its region`);
    const e = L.XATTR_ENTRY.parse(buf, off);
    const nameEnd = off + L.XATTR_ENTRY.size + e.nameLen;
    if (nameEnd > end) throw formatError(ino, `${where}: xattr name at ${off} runs past its region`);
    const prefix = PREFIX[e.nameIndex] ?? (e.nameIndex === 0 ? '' : undefined);
    const suffix = new TextDecoder().decode(buf.subarray(off + L.XATTR_ENTRY.size, nameEnd));
    if (prefix === undefined) throw formatError(ino, `${where}: unknown xattr name index ${e.nameIndex}`);
    const name = prefix + suffix;
    if (e.valueInum !== 0) {
      out.push({ name, valueInum: e.valueInum, valueSize: e.valueSize });
    } else {
      const vs = valueBase + e.valueOffs;
      if (vs < start || vs + e.valueSize > end)
        throw formatError(ino, `${where}: xattr ${name} value [${e.valueOffs}, +${e.valueSize}) outside its region`);
      out.push({ name, value: buf.slice(vs, vs + e.valueSize), valueSize: e.valueSize });
    }
    off = (nameEnd + 3) & ~3;
  }
  return out;
}

/** In-inode attributes: a magic u32 at 128 + extra_isize, then entries; values relative to the first entry. */
export function inodeXattrs(inode: Inode): RawXattr[] {
  const at = 128 + inode.extraIsize;
  const raw = inode.raw;
  if (inode.extraIsize === 0 || at + 4 > raw.length) return [];
  const magic = new DataView(raw.buffer, raw.byteOffset + at, 4).getUint32(0, true);
  if (magic !== L.XATTR_MAGIC) return [];
  return parseEntries(raw, at + 4, at + 4, raw.length, inode.ino, 'in-inode xattrs');
}

/** The external attribute block (i_file_acl), checksummed with metadata_csum. */
export async function blockXattrs(io: Ext4Io, inode: Inode): Promise<RawXattr[]> {
  const b = inode.fileAcl;
  if (b === 0) return [];
  io.checkRange(b, 1, `inode ${inode.ino} xattr block`);
  const buf = await io.metaBlock(b, `inode ${inode.ino} xattr block`);
  const h = L.XATTR_BLOCK_HEADER.parse(buf);
  if (h.magic !== L.XATTR_MAGIC) throw formatError(inode.ino, `xattr block ${b}: bad magic 0x${h.magic.toString(16)}`);
  if (h.blocks !== 1) throw formatError(inode.ino, `xattr block ${b}: h_blocks ${h.blocks} != 1`);
  if (io.sb.csumSeed !== undefined) {
    const z = new Uint8Array(4);
    let c = crc32cU64(io.sb.csumSeed, b);
    c = crc32cRaw(c, buf, 0, 0x10);
    c = crc32cRaw(c, z);
    c = crc32cRaw(c, buf, 0x14, buf.length);
    if (c !== h.checksum) io.warn(`ext4 inode ${inode.ino}: xattr block ${b} checksum mismatch`);
  }
  return parseEntries(buf, L.XATTR_BLOCK_HEADER.size, 0, buf.length, inode.ino, `xattr block ${b}`);
}

const ACL_USER = 2;
const ACL_GROUP = 8;

/** ext4_acl (version 1, short entries for the *_OBJ/MASK/OTHER tags) -> posix_acl_xattr (version 2, 8-byte entries). */
export function aclToXattr(v: Uint8Array, ino: number): Uint8Array {
  const dv = new DataView(v.buffer, v.byteOffset, v.length);
  if (v.length < 4 || dv.getUint32(0, true) !== 1) throw formatError(ino, 'POSIX ACL: bad version');
  const entries: Array<[number, number, number]> = [];
  let off = 4;
  while (off < v.length) {
    if (off + 4 > v.length) throw formatError(ino, 'POSIX ACL: truncated entry');
    const tag = dv.getUint16(off, true);
    const perm = dv.getUint16(off + 2, true);
    if (tag === ACL_USER || tag === ACL_GROUP) {
      if (off + 8 > v.length) throw formatError(ino, 'POSIX ACL: truncated entry');
      entries.push([tag, perm, dv.getUint32(off + 4, true)]);
      off += 8;
    } else {
      entries.push([tag, perm, 0xffffffff]);
      off += 4;
    }
  }
  const out = new Uint8Array(4 + 8 * entries.length);
  const ov = new DataView(out.buffer);
  ov.setUint32(0, 2, true);
  entries.forEach(([tag, perm, id], i) => {
    ov.setUint16(4 + 8 * i, tag, true);
    ov.setUint16(6 + 8 * i, perm, true);
    ov.setUint32(8 + 8 * i, id, true);
  });
  return out;
}
