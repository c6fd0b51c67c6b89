/**
 * An ext2/3/4 filesystem inside a file at a byte offset: a filesystem image
 * of its own (offset 0) or a partition of a raw disk being written. The
 * files strategy builds filesystems in place this way, so a rebuilt
 * filesystem is never copied a second time.
 */
import { RawDisk } from '../../container/raw.js';
import { DiskSlice } from '../../container/slice.js';
import { openExt4, type Ext4Fs } from './ext4.js';

export interface FsImage {
  file: string;
  offset: number;
  length: number;
}

/** Open read-only through vmdn's reader; writes go to `img.offset + device offset` in `img.file`. */
export async function openFsImage(img: FsImage): Promise<{ fs: Ext4Fs; close(): Promise<void> }> {
  const disk = await RawDisk.open(img.file);
  try {
    const fs = await openExt4(img.offset === 0 && img.length === disk.virtualSize ? disk : new DiskSlice(disk, img.offset, img.length));
    return { fs, close: () => disk.close() };
  } catch (err) {
    await disk.close();
    throw err;
  }
}

/** The name e2fsprogs tools (debugfs, e2fsck) take for a filesystem at an offset. */
export function e2fsName(img: FsImage): string {
  return img.offset ? `${img.file}?offset=${img.offset}` : img.file;
}
