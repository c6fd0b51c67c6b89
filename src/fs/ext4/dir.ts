/**
 * Directory blocks, read linearly. Hashed (htree) directories need no special
 * path: their leaves are ordinary blocks, the dx_root hides its index behind
 * a '..' entry whose rec_len spans the block, and every dx_node starts with
 * an empty entry (inode 0) spanning the block, so both parse as no entries.
 */
import * as L from './layout.js';
import { crc32cRaw } from './crc32c.js';
import { formatError, type Ext4Io } from './io.js';
import type { DirEntry, NodeType } from '../types.js';

const FT: Array<NodeType | undefined> = [undefined, 'file', 'dir', 'chardev', 'blockdev', 'fifo', 'socket', 'symlink'];
const decoder = new TextDecoder('utf-8', { fatal: false });

/** A parsed entry; `type` is undefined when the fs lacks the filetype feature (the caller stats the inode). */
export interface RawDirEntry extends Omit<DirEntry, 'type'> {
  type: NodeType | undefined;
}

/** rec_len as stored: 64 KiB blocks encode 65536 as 0 or 65535 and borrow the low bits. */
function recLen(v: number, bs: number): number {
  if (bs < 65536) return v;
  if (v === 65535 || v === 0) return bs;
  return (v & 65532) | ((v & 3) << 16);
}

/** Parse entries in buf[start, end) (a whole block, or an inline-data region). */
export function parseDirEntries(io: Ext4Io, buf: Uint8Array, start: number, end: number, dirIno: number, where: string, out: RawDirEntry[]): void {
  const sb = io.sb;
  const hasFt = (sb.incompat & L.INCOMPAT_FILETYPE) !== 0;
  let off = start;
  while (off < end) {
    if (off + 8 > end) throw formatError(dirIno, `${where}: directory entry at ${off - start} runs past the block`);
    const d = L.DIRENT.parse(buf, off);
    const rl = recLen(d.recLen, io.bs);
    const nameLen = hasFt ? d.nameLen : d.nameLen | (d.fileType << 8);
    if (rl < 8 || rl % 4 !== 0 || off + rl > end) throw formatError(dirIno, `${where}: bad rec_len ${rl} at offset ${off - start}`);
    if (nameLen > rl - 8) throw formatError(dirIno, `${where}: name_len ${nameLen} exceeds rec_len ${rl} at offset ${off - start}`);
    if (d.inode !== 0) {
      if (d.inode > sb.inodesCount) throw formatError(dirIno, `${where}: entry at offset ${off - start} points to inode ${d.inode} > inodes_count ${sb.inodesCount}`);
      const nameBytes = buf.slice(off + 8, off + 8 + nameLen);
      if (nameLen === 0) throw formatError(dirIno, `${where}: empty name at offset ${off - start}`);
      out.push({ nameBytes, name: decoder.decode(nameBytes), ino: d.inode, type: hasFt ? FT[d.fileType] : undefined });
    }
    off += rl;
  }
}

/** metadata_csum leaf blocks end in a 12-byte fake entry holding crc32c(inode seed, block[0, bs-12)). */
export function verifyDirBlock(io: Ext4Io, buf: Uint8Array, csumSeed: number | undefined, dirIno: number, block: number): void {
  if (csumSeed === undefined || buf.length < 12) return;
  const t = L.DIRENT_TAIL.parse(buf, buf.length - 12);
  if (t.zero1 !== 0 || t.recLen !== 12 || t.zero2 !== 0 || t.fileType !== 0xde) return; // dx blocks carry a dx_tail instead
  const c = crc32cRaw(csumSeed, buf, 0, buf.length - 12);
  if (c !== t.checksum) io.warn(`ext4 inode ${dirIno}: directory block ${block} checksum mismatch`);
}

/** Inline directories: i_block holds the parent inode (4 bytes) then entries; system.data continues them. */
export function parseInlineDir(io: Ext4Io, iblock: Uint8Array, extra: Uint8Array | undefined, dirIno: number, out: RawDirEntry[]): void {
  parseDirEntries(io, iblock, 4, iblock.length, dirIno, 'inline directory', out);
  if (extra && extra.length > 0) parseDirEntries(io, extra, 0, extra.length, dirIno, 'inline directory (system.data)', out);
}

export const isDotOrDotDot = (n: Uint8Array): boolean => (n.length === 1 && n[0] === 0x2e) || (n.length === 2 && n[0] === 0x2e && n[1] === 0x2e);
