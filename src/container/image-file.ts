/**
 * Opening an image file for reading. The path is the user's (or, for backing
 * files, the image's): it may name a FIFO, a socket, a directory or a device.
 * A plain open() of a FIFO blocks until a writer appears, i.e. forever, so the
 * type is checked with stat() first and the open itself is non-blocking, with
 * the descriptor checked again (the path may have changed in between).
 */
import fs from 'node:fs/promises';
import { constants, type Stats } from 'node:fs';
import { VmdnError } from '../errors.js';

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  return 'not a regular file';
}

function checkType(file: string, st: Stats): void {
  if (st.isFile() || st.isBlockDevice()) return;
  throw new VmdnError('E_USAGE', `${file}: is ${kindOf(st)}; an image must be a regular file or a block device`, { path: file, type: kindOf(st).replace(/^an? /, '') });
}

/** Size of a block device from sysfs (stat() reports 0 for devices). */
async function blockDeviceSize(file: string, st: Stats): Promise<number> {
  const rdev = st.rdev;
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00);
  try {
    const sectors = Number((await fs.readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
    if (Number.isSafeInteger(sectors * 512)) return sectors * 512;
  } catch {
    /* no sysfs: fall through */
  }
  throw new VmdnError('E_UNSUPPORTED', `${file}: cannot tell the size of block device ${major}:${minor}`, { path: file });
}

export interface OpenedImageFile {
  fh: fs.FileHandle;
  /** Bytes readable: the file size, or a block device's size. */
  size: number;
}

export async function openImageFile(file: string): Promise<OpenedImageFile> {
  checkType(file, await fs.stat(file));
  // O_NONBLOCK: should a FIFO have been swapped in after the stat, open() still returns
  // (and the fstat below refuses it); on files and block devices it changes nothing.
  const fh = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    checkType(file, st);
    return { fh, size: st.isBlockDevice() ? await blockDeviceSize(file, st) : st.size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}
