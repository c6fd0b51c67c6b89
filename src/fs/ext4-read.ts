/** Streaming file content from block runs: coalesced large reads, holes and unwritten extents as zeros. */
import type { Ext4Io } from './ext4-io.js';
import type { Run } from './ext4-extents.js';

/** Upper bound of one device read (and of one zero chunk). */
export const MAX_READ = 4 << 20;

interface Segment {
  /** Device byte offset, or -1 for zeros. */
  dev: number;
  length: number;
}

/** Cover [0, size) with data and zero segments of at most MAX_READ bytes, merging physically adjacent runs. */
export function planSegments(runs: Run[], bs: number, size: number): Segment[] {
  const segs: Segment[] = [];
  const add = (dev: number, length: number): void => {
    while (length > 0) {
      const last = segs[segs.length - 1];
      const contiguous = last && (dev < 0 ? last.dev < 0 : last.dev >= 0 && last.dev + last.length === dev);
      const room = contiguous ? MAX_READ - last.length : 0;
      if (room > 0) {
        const n = Math.min(room, length);
        last.length += n;
        length -= n;
        if (dev >= 0) dev += n;
        continue;
      }
      const n = Math.min(MAX_READ, length);
      segs.push({ dev, length: n });
      length -= n;
      if (dev >= 0) dev += n;
    }
  };
  let pos = 0;
  for (const r of runs) {
    const start = r.logical * bs;
    if (start >= size) break;
    if (start > pos) add(-1, start - pos);
    const len = Math.min(r.length * bs, size - start);
    add(r.uninit ? -1 : r.physical * bs, len);
    pos = start + len;
  }
  if (pos < size) add(-1, size - pos);
  return segs;
}

/** Yield the segments in order, reading the next one while the consumer handles the current. */
export async function* streamSegments(io: Ext4Io, segs: Segment[], signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const fetch = (s: Segment): Promise<Uint8Array> => (s.dev < 0 ? Promise.resolve(new Uint8Array(s.length)) : io.disk.read(s.dev, s.length));
  let pending: Promise<Uint8Array> | undefined = segs.length ? fetch(segs[0]) : undefined;
  for (let i = 0; i < segs.length; i++) {
    signal?.throwIfAborted();
    const cur = await pending!;
    pending = i + 1 < segs.length ? fetch(segs[i + 1]) : undefined;
    // If the consumer stops early, the read-ahead must not become an unhandled rejection.
    pending?.catch(() => undefined);
    yield cur;
  }
}
