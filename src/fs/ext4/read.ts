/** Streaming file content from block runs: coalesced large reads, holes and unwritten extents as zeros. */
import type { Ext4Io } from './io.js';
import type { Run } from './extents.js';

/** Upper bound of one device read (and of one zero chunk). */
export const MAX_READ = 4 << 20;

interface Segment {
  /** Device byte offset, or -1 for zeros. */
  dev: number;
  length: number;
}

/** Runs and the holes between them, as pieces of at most MAX_READ bytes (lazily: a corrupt size may be 2^53). */
function* pieces(runs: Run[], bs: number, size: number): Generator<Segment> {
  function* span(dev: number, length: number): Generator<Segment> {
    for (let done = 0; done < length; done += MAX_READ) yield { dev: dev < 0 ? -1 : dev + done, length: Math.min(MAX_READ, length - done) };
  }
  let pos = 0;
  for (const r of runs) {
    const start = r.logical * bs;
    if (start >= size) break;
    if (start > pos) yield* span(-1, start - pos);
    const len = Math.min(r.length * bs, size - start);
    yield* span(r.uninit ? -1 : r.physical * bs, len);
    pos = start + len;
  }
  if (pos < size) yield* span(-1, size - pos);
}

/** Cover [0, size) with data and zero segments of at most MAX_READ bytes, merging physically adjacent runs. */
export function* planSegments(runs: Run[], bs: number, size: number): Generator<Segment> {
  let cur: Segment | undefined;
  for (const p of pieces(runs, bs, size)) {
    if (cur && (p.dev < 0 ? cur.dev < 0 : cur.dev >= 0 && cur.dev + cur.length === p.dev)) {
      const n = Math.min(MAX_READ - cur.length, p.length);
      cur.length += n;
      if (n === p.length) continue;
      yield cur;
      cur = { dev: p.dev < 0 ? -1 : p.dev + n, length: p.length - n };
      continue;
    }
    if (cur) yield cur;
    cur = { ...p };
  }
  if (cur) yield cur;
}

/** Yield the segments in order, reading the next one while the consumer handles the current. */
export async function* streamSegments(io: Ext4Io, segs: Iterator<Segment>, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const fetch = (s: Segment): Promise<Uint8Array> => (s.dev < 0 ? Promise.resolve(new Uint8Array(s.length)) : io.disk.read(s.dev, s.length));
  const next = (): Promise<Uint8Array> | undefined => {
    const r = segs.next();
    return r.done ? undefined : fetch(r.value);
  };
  let pending = next();
  while (pending) {
    signal?.throwIfAborted();
    const cur = await pending;
    pending = next();
    // If the consumer stops early, the read-ahead must not become an unhandled rejection.
    pending?.catch(() => undefined);
    yield cur;
  }
}
