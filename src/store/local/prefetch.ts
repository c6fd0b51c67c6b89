/**
 * LocalStore.prefetch: read objects' bytes (in the given order, a few lanes at
 * a time, into scratch buffers that are thrown away) so they sit in the page
 * cache when a worker decodes them: the workers read one object at a time
 * each, which leaves a cold disk idle between requests. A packed object's
 * stretch is read together with the adjacent ones that follow it in the list
 * (one read for a run, as the workers read them). Best effort: what cannot be
 * read is skipped (whoever needs it reports it); stops early when `signal`
 * aborts or after about `maxBytes`.
 */
import fs from 'node:fs/promises';
import type { Placed } from './read-runs.js';
import { ENTRY_HEADER } from './pack-file.js';

const LANES = 4;
const SPAN = 1 << 20;

export async function prefetchPlaces(places: Iterator<Placed>, opts: { signal?: AbortSignal; maxBytes?: number }): Promise<void> {
  let bytes = 0;
  let held: Placed | undefined;
  const next = (): IteratorResult<Placed> => {
    if (held) {
      const r = { done: false as const, value: held };
      held = undefined;
      return r;
    }
    return places.next();
  };
  /** The next read: a loose file, or a pack stretch covering the adjacent entries after the first. */
  const take = (): { path: string; start?: number; end?: number } | undefined => {
    const r = next();
    if (r.done) return undefined;
    const p = r.value;
    if (p.packOffset === undefined) return { path: p.objPath };
    let end = p.packOffset + p.storedSize!;
    for (;;) {
      const n = places.next();
      if (n.done) break;
      const q = n.value;
      if (q.objPath !== p.objPath || q.packOffset !== end + ENTRY_HEADER || q.packOffset + q.storedSize! - p.packOffset > SPAN) {
        held = q;
        break;
      }
      end = q.packOffset + q.storedSize!;
    }
    return { path: p.objPath, start: p.packOffset, end };
  };
  const lane = async () => {
    const buf = Buffer.allocUnsafe(SPAN);
    for (let r = take(); r && !opts.signal?.aborted && bytes < (opts.maxBytes ?? Infinity); r = take()) {
      let h: fs.FileHandle | undefined;
      try {
        h = await fs.open(r.path, 'r');
        if (r.start === undefined) {
          for (let n = buf.length; n === buf.length; bytes += n) n = (await h.read(buf, 0, buf.length, null)).bytesRead;
        } else {
          const len = Math.min(buf.length, r.end! - r.start);
          bytes += (await h.read(buf, 0, len, r.start)).bytesRead;
        }
      } catch {
        /* best effort */
      } finally {
        await h?.close().catch(() => {});
      }
    }
  };
  await Promise.all(Array.from({ length: LANES }, lane));
}
