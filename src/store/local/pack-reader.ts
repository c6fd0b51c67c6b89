/**
 * Reads of objects from pack files (pack-file.ts): a pread of (offset, length)
 * through a small LRU of open descriptors, one per thread (the main thread for
 * getEncoded, each codec worker for its decodes). A pack unlinked by gc's
 * repack stays readable through a descriptor opened before; one opened after
 * fails with ENOENT, and the caller looks the object up again (local-store.ts).
 */
import fsSync from 'node:fs';
import { VmdnError } from '../../errors.js';

const MAX_OPEN = 16;
const open = new Map<string, number>();

function fdOf(file: string): number {
  let fd = open.get(file);
  if (fd !== undefined) {
    // most recently used last: Map keeps insertion order
    open.delete(file);
    open.set(file, fd);
    return fd;
  }
  fd = fsSync.openSync(file, 'r');
  open.set(file, fd);
  if (open.size > MAX_OPEN) {
    const [oldest, ofd] = open.entries().next().value as [string, number];
    open.delete(oldest);
    fsSync.closeSync(ofd);
  }
  return fd;
}

/** Where an object's encoded bytes are: a whole loose file (no offset), or a stretch of a pack. */
export interface Place {
  path: string;
  offset?: number;
  length?: number;
}

/**
 * Read `length` bytes at `offset` of `file` into `buf` at `at`. ENOENT becomes
 * E_NOT_FOUND naming `digest`; a short read (a truncated pack) E_CORRUPT_OBJECT.
 */
export function preadInto(file: string, offset: number, length: number, buf: Buffer, at: number, digest: string, source: string): void {
  let fd: number;
  try {
    fd = fdOf(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new VmdnError('E_NOT_FOUND', `object ${digest} not in store ${source}`, { digest, errno: 'ENOENT' });
    throw err;
  }
  let n = 0;
  while (n < length) {
    const r = fsSync.readSync(fd, buf, at + n, length - n, offset + n);
    if (r === 0) throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} from ${source}: pack ${file} ends before the object does`, { digest, source });
    n += r;
  }
}

/** Close every descriptor (a store closing, or a test that unlinks packs). */
export function closePacks(): void {
  for (const fd of open.values()) fsSync.closeSync(fd);
  open.clear();
}
