/**
 * Large directories for the files strategy. `mke2fs -d` links every entry by
 * scanning the whole directory for room (e2fsprogs 1.47), so a 100k-entry
 * directory takes it minutes. Instead the stage keeps such a directory small,
 * parks its other entries in small holding directories and adds a reserve
 * file of exactly the size the full directory needs. After mke2fs this module
 * writes the full directory into the reserve file's blocks and swaps the two
 * inodes' block maps; debugfs then unlinks the parked names and frees the
 * reserve (now owning the directory's old blocks). Every structure it writes
 * is checked by e2fsck -fn in the tests.
 */
import fsp, { type FileHandle } from 'node:fs/promises';
import type { Ext4Fs } from './ext4.js';
import { crc32cRaw, crc32cU32 } from './crc32c.js';
import { openFsImage, type FsImage } from './image.js';
import { writeInodeChecksum } from './inode.js';
import type { NodeType } from '../types.js';
import { VmdnError } from '../../errors.js';

export interface DirEntrySpec {
  name: Uint8Array;
  ino: number;
  type: NodeType;
}

const FILE_TYPE: Record<NodeType, number> = { file: 1, dir: 2, chardev: 3, blockdev: 4, fifo: 5, socket: 6, symlink: 7 };
const TAIL = 12;
const recLen = (nameLen: number) => (8 + nameLen + 3) & ~3;

/** Greedy packing shared by the size estimate and the writer, so both agree to the block. */
function pack(nameLens: number[], bs: number, csum: boolean): number[][] {
  const room = bs - (csum ? TAIL : 0);
  const blocks: number[][] = [];
  let cur: number[] = [];
  let used = 0;
  nameLens.forEach((n, i) => {
    if (used + recLen(n) > room) {
      blocks.push(cur);
      cur = [];
      used = 0;
    }
    cur.push(i);
    used += recLen(n);
  });
  if (cur.length) blocks.push(cur);
  return blocks;
}

/** Blocks a linear directory with these names ('.' and '..' included by the caller) takes. */
export function dirBlockCount(nameLens: number[], bs: number, csum: boolean): number {
  return pack(nameLens, bs, csum).length;
}

/** The metadata_csum tail: a fake entry (inode 0, rec_len 12, type 0xde) holding crc32c of the block. */
function seal(b: Buffer, room: number, seed: number): void {
  b.writeUInt16LE(TAIL, room + 4);
  b[room + 7] = 0xde;
  b.writeUInt32LE(crc32cRaw(seed, b, 0, room) >>> 0, room + 8);
}

export function packDirBlocks(entries: DirEntrySpec[], bs: number, seed: number | undefined): Buffer[] {
  const csum = seed !== undefined;
  const room = bs - (csum ? TAIL : 0);
  return pack(entries.map((e) => e.name.length), bs, csum).map((idx) => {
    const b = Buffer.alloc(bs);
    let off = 0;
    idx.forEach((i, k) => {
      const e = entries[i]!;
      const len = k === idx.length - 1 ? room - off : recLen(e.name.length);
      b.writeUInt32LE(e.ino, off);
      b.writeUInt16LE(len, off + 4);
      b[off + 6] = e.name.length;
      b[off + 7] = FILE_TYPE[e.type];
      b.set(e.name, off + 8);
      off += len;
    });
    if (csum) seal(b, room, seed!);
    return b;
  });
}

/** Byte ranges of an inode whose block map the swap moves: i_block, size, block count. */
const SWAP: Array<[number, number]> = [[0x28, 60], [0x4, 4], [0x6c, 4], [0x1c, 4], [0x74, 2]];
/** The flags that describe the block map (extents, inline data, htree index, huge file); others (chattr) stay. */
const MAP_FLAGS = 0x80000 | 0x10000000 | 0x1000 | 0x40000;
const INDEX_FL = 0x1000;

/**
 * Write `entries` as directory `dirIno`'s content into the blocks of regular
 * file `reserveIno`, then swap the two inodes' block maps.
 */
export async function installDirectory(img: FsImage, dirIno: number, reserveIno: number, entries: DirEntrySpec[]): Promise<void> {
  const opened = await openFsImage(img);
  const fail = (msg: string): never => {
    throw new VmdnError('E_INTERNAL', `large directory ${dirIno}: ${msg}`);
  };
  try {
    const fs = opened.fs;
    const bs = fs.superblock.blockSize;
    const dir = await fs.inode(dirIno);
    const reserve = await fs.inode(reserveIno);
    const depth = reserve.block[0] === 0x0a && reserve.block[1] === 0xf3 ? reserve.block[6]! | (reserve.block[7]! << 8) : 0;
    if (depth !== 0) fail('reserve file has a multi-level extent tree');
    const seed = fs.csumSeed === undefined ? undefined : crc32cU32(crc32cU32(fs.csumSeed, dirIno), dir.generation);
    const blocks = packDirBlocks(entries, bs, seed);
    if (blocks.length * bs !== reserve.size) fail(`needs ${blocks.length} blocks, reserve has ${reserve.size / bs}`);
    const extents = await fs.fileExtents(await fs.stat(reserveIno));
    const h = await fsp.open(img.file, 'r+');
    try {
      let i = 0;
      for (const e of extents) {
        for (let o = 0; o < e.length; o += bs) await h.write(blocks[i++]!, 0, bs, img.offset + e.deviceOffset + o);
      }
      if (i !== blocks.length) fail('reserve file blocks do not match its size');
      const [d, r] = [await readInode(h, fs, img, dirIno), await readInode(h, fs, img, reserveIno)];
      for (const [off, len] of SWAP) {
        const tmp = Buffer.from(d.subarray(off, off + len));
        d.set(r.subarray(off, off + len), off);
        r.set(tmp, off);
      }
      const [fd, fr] = [d.readUInt32LE(0x20), r.readUInt32LE(0x20)];
      // the new directory is linear: no htree index flag
      d.writeUInt32LE(((fd & ~MAP_FLAGS) | (fr & MAP_FLAGS & ~INDEX_FL)) >>> 0, 0x20);
      r.writeUInt32LE(((fr & ~MAP_FLAGS) | (fd & MAP_FLAGS)) >>> 0, 0x20);
      await writeInode(h, fs, img, dirIno, d);
      await writeInode(h, fs, img, reserveIno, r);
    } finally {
      await h.close();
    }
  } finally {
    await opened.close();
  }
}

/**
 * Make directory `ino` (a holding directory whose entries now live elsewhere)
 * empty in place: '.' and '..' in its first block, nothing in the others, no
 * htree index. debugfs `rmdir` then frees it like any empty directory.
 */
export async function emptyDirectory(img: FsImage, ino: number, parentIno: number): Promise<void> {
  const opened = await openFsImage(img);
  try {
    const fs = opened.fs;
    const bs = fs.superblock.blockSize;
    const node = await fs.inode(ino);
    const seed = fs.csumSeed === undefined ? undefined : crc32cU32(crc32cU32(fs.csumSeed, ino), node.generation);
    const room = bs - (seed !== undefined ? TAIL : 0);
    const extents = await fs.fileExtents(await fs.stat(ino));
    const h = await fsp.open(img.file, 'r+');
    try {
      let first = true;
      for (const e of extents) {
        for (let o = 0; o < e.length; o += bs) {
          const b = Buffer.alloc(bs);
          if (first) {
            // '.' then '..' taking the rest of the block
            b.writeUInt32LE(ino, 0);
            b.writeUInt16LE(12, 4);
            b[6] = 1;
            b[7] = 2;
            b[8] = 0x2e;
            b.writeUInt32LE(parentIno, 12);
            b.writeUInt16LE(room - 12, 16);
            b[18] = 2;
            b[19] = 2;
            b[20] = 0x2e;
            b[21] = 0x2e;
            first = false;
          } else {
            b.writeUInt16LE(room, 4); // one unused entry spanning the block
          }
          if (seed !== undefined) seal(b, room, seed);
          await h.write(b, 0, bs, img.offset + e.deviceOffset + o);
        }
      }
      const raw = await readInode(h, fs, img, ino);
      raw.writeUInt32LE((raw.readUInt32LE(0x20) & ~INDEX_FL) >>> 0, 0x20);
      await writeInode(h, fs, img, ino, raw);
    } finally {
      await h.close();
    }
  } finally {
    await opened.close();
  }
}

async function readInode(h: FileHandle, fs: Ext4Fs, img: FsImage, ino: number): Promise<Buffer> {
  const b = Buffer.alloc(fs.superblock.inodeSize);
  await h.read(b, 0, b.length, img.offset + fs.inodeOffset(ino));
  return b;
}

/** Write a raw inode back, its checksum recomputed. */
async function writeInode(h: FileHandle, fs: Ext4Fs, img: FsImage, ino: number, b: Buffer): Promise<void> {
  if (fs.csumSeed !== undefined) writeInodeChecksum(b, fs.csumSeed, ino);
  await h.write(b, 0, b.length, img.offset + fs.inodeOffset(ino));
}
