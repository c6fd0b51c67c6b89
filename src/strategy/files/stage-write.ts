/**
 * Files export, staging: a file's content into its descriptor in the stage
 * (opened by files-stage, exclusively, without following links), then its
 * owner and mode -- by descriptor, never by path.
 */
import fs from 'node:fs';
import { promisify } from 'node:util';
import type { CopyToFile, ReadableStore } from '../../store/types.js';
import type { TreeRecord } from '../../model/files-tree.js';
import { VmdnError } from '../../errors.js';

const CHUNKS_IN_FLIGHT = 8;

export interface WriteOptions {
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
}

/**
 * The store's workers decode each chunk and write it into the file themselves
 * (they share this process's descriptors): no content crosses to this thread,
 * which is what made staging slower than a chunks export.
 */
export async function writeFileDirect(fd: number, r: TreeRecord, store: CopyToFile, opts: WriteOptions): Promise<void> {
  try {
    fs.ftruncateSync(fd, r.size!);
    const chunks = r.chunks!;
    let n = 0;
    let failed = false;
    const lane = async () => {
      while (n < chunks.length) {
        if (failed || opts.signal?.aborted) return;
        const [off, len, digest] = chunks[n++]!;
        try {
          const got = await store.copyToFd(digest, fd, off);
          if (got !== len) throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${got} bytes, the tree says ${len}`, { digest });
        } catch (err) {
          failed = true;
          throw err;
        }
        opts.onBytes?.(len);
      }
    };
    // every lane settles before the descriptor closes: a worker must never write into a reused number
    const settled = await Promise.allSettled(Array.from({ length: Math.min(CHUNKS_IN_FLIGHT, chunks.length) }, lane));
    for (const x of settled) if (x.status === 'rejected') throw x.reason;
    opts.signal?.throwIfAborted();
    fs.fchownSync(fd, r.uid, r.gid);
    fs.fchmodSync(fd, r.perm);
  } finally {
    fs.closeSync(fd);
  }
}

/** Size, owner and mode only: mke2fs gives a fully sparse file an inode without blocks. */
export function standIn(fd: number, r: TreeRecord): void {
  try {
    fs.ftruncateSync(fd, r.size!);
    fs.fchownSync(fd, r.uid, r.gid);
    fs.fchmodSync(fd, r.perm);
  } finally {
    fs.closeSync(fd);
  }
}

export async function writeFile(fd: number, r: TreeRecord, store: ReadableStore, opts: WriteOptions): Promise<void> {
  try {
    // a few chunks in flight: each get decodes and verifies in the store's workers
    const chunks = r.chunks!;
    const window: Array<Promise<Uint8Array>> = [];
    let n = 0;
    for (let i = 0; i < chunks.length; i++) {
      while (n < chunks.length && window.length < CHUNKS_IN_FLIGHT) {
        const g = store.get(chunks[n++]![2], { signal: opts.signal });
        g.catch(() => {}); // surfaced when awaited
        window.push(g);
      }
      const data = await window.shift()!;
      const [off, len, digest] = chunks[i]!;
      if (data.length !== len) throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${data.length} bytes, the tree says ${len}`, { digest });
      await writeAt(fd, data, len, off);
      opts.onBytes?.(len);
    }
    fs.ftruncateSync(fd, r.size!);
    fs.fchownSync(fd, r.uid, r.gid);
    fs.fchmodSync(fd, r.perm);
  } finally {
    fs.closeSync(fd);
  }
}

const write = promisify(fs.write);

export async function writeAt(fd: number, data: Uint8Array, len: number, pos: number): Promise<void> {
  for (let done = 0; done < len; ) {
    const { bytesWritten } = await write(fd, data, done, len - done, pos + done);
    if (bytesWritten <= 0) throw new VmdnError('E_IO', 'short write');
    done += bytesWritten;
  }
}
