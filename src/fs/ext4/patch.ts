/**
 * Patch inode timestamps in an ext2/3/4 image file in place, checksums
 * recomputed. mke2fs -d copies times from the staged files at second
 * precision at best and cannot set ctime or crtime at all; this puts back
 * the recorded ones, nanoseconds included. Only the four time fields and the
 * inode checksum change, so the filesystem stays as consistent as mke2fs
 * left it (e2fsck -fn checks that in the tests).
 */
import fs_ from 'node:fs';
import { openFsImage, type FsImage } from './image.js';
import { writeInodeChecksum } from './inode.js';
import type { Timestamp } from '../types.js';

export interface InodeTimes {
  mtime: Timestamp;
  atime: Timestamp;
  ctime: Timestamp;
  crtime?: Timestamp;
}

/** Low 32 bits (as stored) and the two epoch bits of a timestamp. */
function split(t: Timestamp): { lo: number; extra: number } {
  const lo = t.sec | 0;
  const epoch = ((t.sec - lo) / 2 ** 32) & 3;
  return { lo: lo >>> 0, extra: ((t.nsec << 2) | epoch) >>> 0 };
}

/** Apply `times` (by inode number) to the filesystem in `img`. */
export async function patchInodeTimes(img: FsImage, times: Map<number, InodeTimes>): Promise<void> {
  const opened = await openFsImage(img);
  await opened.close(); // inode locations are all it needs, and they are loaded
  const fs = opened.fs;
  const sb = fs.superblock;
  const fd = fs_.openSync(img.file, 'r+');
  try {
    const raw = Buffer.alloc(sb.inodeSize);
    for (const [ino, t] of times) {
      const off = img.offset + fs.inodeOffset(ino);
      fs_.readSync(fd, raw, 0, raw.length, off);
      const extraIsize = sb.inodeSize > 128 ? raw.readUInt16LE(128) : 0;
      const has = (end: number) => extraIsize >= end;
      const set = (base: number, extraOff: number | undefined, v: Timestamp) => {
        const s = split(v);
        raw.writeUInt32LE(s.lo, base);
        if (extraOff !== undefined && has(extraOff - 128 + 4)) raw.writeUInt32LE(s.extra, extraOff);
      };
      set(0x10, 128 + 0x8, t.mtime);
      set(0x8, 128 + 0xc, t.atime);
      set(0xc, 128 + 0x4, t.ctime);
      if (t.crtime && has(0x14)) set(128 + 0x10, 128 + 0x14, t.crtime);
      if (fs.csumSeed !== undefined) writeInodeChecksum(raw, fs.csumSeed, ino);
      fs_.writeSync(fd, raw, 0, raw.length, off);
    }
  } finally {
    fs_.closeSync(fd);
  }
}
