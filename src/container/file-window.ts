/**
 * A window onto part of an open file that reads like a file of its own: lets
 * a reader that takes a file handle (the VMDK sparse extent) parse a member
 * of an archive in place, at its offset, without copying it out. Reads are
 * clipped at the window's end, as a file's are at EOF.
 */
import type fs from 'node:fs/promises';


export function fileWindow(fh: fs.FileHandle, base: number, size: number): fs.FileHandle {
  const w = {
    async read(buf: Uint8Array, off: number, len: number, pos: number) {
      const n = Math.max(0, Math.min(len, size - pos));
      if (n === 0) return { bytesRead: 0, buffer: buf };
      return fh.read(buf, off, n, base + pos);
    },
  };
  // only read() is used by the readers this is given to (vmdk/sparse.ts)
  return w as unknown as fs.FileHandle;
}
