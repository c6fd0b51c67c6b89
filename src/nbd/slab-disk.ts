/**
 * A chunks image of a local store as a Disk whose reads are leases: views of
 * decoded chunks in a shared slab (store/local/slab.ts), held until the
 * caller releases them (an NBD reply, once the socket took its bytes). The
 * fast path of `vmdn nbd` for a stored image: no buffer per chunk, no copy
 * into a reply, chunks decoded ahead of a reader that goes in order. Every
 * chunk is decoded and verified by hash in the codec workers.
 *
 * Who holds a slot: the decoded-chunk cache (LRU, sized in bytes) or the
 * read-ahead, one per entry, until the entry is dropped; each lease, until
 * released; the worker, until it answered (slab-reads.ts).
 */
import type { Disk, Extent } from '../container/disk.js';
import type { Manifest } from '../model/manifest.js';
import type { SlabRead, SlabReads } from '../store/local/slab-reads.js';
import type { SlabSlot } from '../store/local/slab.js';
import { lastAtOrBefore } from '../util/search.js';
import { VmdnError } from '../errors.js';

/** Bytes of a range as pieces to send in order; `release` (once) lets the slab reuse them. */
export interface Lease {
  pieces: Uint8Array[];
  release(): void;
}

/** Read-only zeros that hole pieces are views of. */
const ZEROS = new Uint8Array(1 << 20);
/** How far past the furthest end read so far a read may start and still count as sequential (a skipped hole). */
const AHEAD_SLACK = 1 << 20;
/**
 * Chunks whose places in the store are looked up in one query (SlabReads.knowPlaces): the
 * first ones at open (all of base's 15,281, ~0.1 s), the next as reading in order gets there.
 */
const PLACE_WINDOW = 1 << 14;

interface Entry {
  read: SlabRead;
  size: number;
  /** Where the chunk ends on the disk (read-ahead drops it once reads are past). */
  end: number;
}

export class SlabDisk implements Disk {
  readonly format = 'vmdn';
  readonly virtualSize: number;
  readonly clusterSize: number;
  private readonly starts: Float64Array;
  private readonly cache = new Map<string, Entry>();
  private cached = 0;
  private readonly ahead = new Map<string, Entry>();
  private lastEnd = -1;
  private aheadEnd = 0;
  /** Chunk indexes [from, to) whose places were looked up last. */
  private placed = { from: 0, to: 0 };

  constructor(
    private readonly manifest: Manifest,
    private readonly reads: SlabReads,
    private readonly opts: { cacheBytes: number; aheadBytes: number },
  ) {
    this.virtualSize = manifest.virtualSize;
    this.clusterSize = manifest.source.clusterSize || 65536;
    this.starts = Float64Array.from(manifest.chunks, (c) => c[0]);
    this.knowPlaces(0, 0);
  }

  /** Places of the chunks [start, end) known to the reads, looked up a window at a time. */
  private knowPlaces(start: number, end: number): void {
    const p = this.placed;
    if (start >= p.from && end <= p.to && p.to > p.from) return;
    const chunks = this.manifest.chunks;
    const to = Math.min(chunks.length, Math.max(end, start + PLACE_WINDOW));
    if (to <= start) return;
    // (a test's stand-in reads may not look places up)
    this.reads.knowPlaces?.(chunks.slice(start, to).map((c) => c[2]));
    this.placed = { from: start, to };
  }

  async *extents(): AsyncIterable<Extent> {
    let cur: { offset: number; length: number } | null = null;
    for (const [o, l] of this.manifest.chunks) {
      if (cur && cur.offset + cur.length === o) cur.length += l;
      else {
        if (cur) yield { ...cur, kind: 'data' };
        cur = { offset: o, length: l };
      }
    }
    if (cur) yield { ...cur, kind: 'data' };
  }

  /** Drop a cache entry (its hold on the slot) if it is still the one cached under `digest`. */
  private uncache(digest: string, e: Entry): void {
    if (this.cache.get(digest) !== e) return;
    this.cache.delete(digest);
    this.cached -= e.size;
    e.read.slot?.unref();
  }

  private dropAhead(digest: string, e: Entry): void {
    if (this.ahead.get(digest) !== e) return;
    this.ahead.delete(digest);
    e.read.slot?.unref();
  }

  private cacheEntry(digest: string, e: Entry): void {
    this.cache.set(digest, e);
    this.cached += e.size;
    // a failed read is forgotten, so the next read of it tries again (and reports its own error)
    e.read.ready.catch(() => this.uncache(digest, e));
  }

  /** Entries for the chunks `idx` (indexes into the manifest), each with a new hold for the caller; missing ones read in one go. */
  private entries(idx: number[]): Entry[] {
    const chunks = this.manifest.chunks;
    const out: Array<Entry | undefined> = [];
    const missing: Array<{ digest: string; size: number; end: number; at: number[] }> = [];
    const byDigest = new Map<string, (typeof missing)[number]>();
    idx.forEach((i, k) => {
      const [o, l, d] = chunks[i]!;
      let e = this.cache.get(d);
      if (e) {
        this.cache.delete(d); // refresh its place
        this.cache.set(d, e);
      } else if ((e = this.ahead.get(d))) {
        this.ahead.delete(d); // its hold moves to the cache
        this.cacheEntry(d, e);
      }
      if (e) {
        e.read.slot?.ref();
        out[k] = e;
        return;
      }
      let m = byDigest.get(d);
      if (!m) byDigest.set(d, (m = { digest: d, size: l, end: o + l, at: [] })), missing.push(m);
      m.at.push(k);
    });
    let got: SlabRead[] = [];
    try {
      if (missing.length) got = this.reads.read(missing);
    } catch (err) {
      // the holds taken above for the caller would never be let go
      for (const e of out) e?.read.slot?.unref();
      throw err;
    }
    missing.forEach((m, j) => {
      const e: Entry = { read: got[j]!, size: m.size, end: m.end };
      this.cacheEntry(m.digest, e);
      for (const k of m.at) {
        e.read.slot?.ref();
        out[k] = e;
      }
    });
    // after the caller's holds are taken: an entry evicted now stays valid until its lease is released
    this.evict();
    return out as Entry[];
  }

  private evict(): void {
    while (this.cached > this.opts.cacheBytes && this.cache.size > 0) {
      const [d, e] = this.cache.entries().next().value!;
      this.uncache(d, e);
    }
  }

  /**
   * When a read follows the furthest read so far, the next `aheadBytes` of chunks are read
   * ahead. "Follows" is loose: qemu-img convert reads in order but up to 8 requests of 2 MiB
   * at once, which arrive out of order; a stricter test dropped the read-ahead at every
   * late request or after a skipped hole, and its chunks were decoded again (16,279 decodes
   * for base's 14,679 objects).
   */
  private readAhead(offset: number, length: number): void {
    const window = this.opts.aheadBytes;
    if (window <= 0) return;
    const end = offset + length;
    // past a hole the client skipped, a read may start well beyond the last, within what was read ahead
    const sequential = offset >= this.lastEnd - window && offset <= Math.max(this.lastEnd + AHEAD_SLACK, this.aheadEnd);
    if (!sequential) {
      // somewhere else entirely: what was read ahead is not going to be read
      for (const [d, e] of [...this.ahead]) this.dropAhead(d, e);
      this.aheadEnd = 0;
      this.lastEnd = end;
      return;
    }
    this.lastEnd = Math.max(this.lastEnd, end);
    // chunks the reads went past (a late request may still want those just behind); the map
    // holds them in disk order, so the first one not past ends the walk
    for (const [d, e] of this.ahead) {
      if (e.end > this.lastEnd - window) break;
      this.dropAhead(d, e);
    }
    if (this.aheadEnd >= this.lastEnd + window / 2) return;
    const chunks = this.manifest.chunks;
    const from = Math.max(this.lastEnd, this.aheadEnd);
    const want: Array<{ digest: string; size: number; end: number }> = [];
    const seen = new Set<string>();
    let bytes = 0;
    const first = Math.max(0, lastAtOrBefore(this.starts, from));
    let i = first;
    for (; i < chunks.length && bytes < this.opts.aheadBytes; i++) {
      const [o, l, d] = chunks[i]!;
      if (o + l <= from) continue;
      bytes += l;
      if (this.cache.has(d) || this.ahead.has(d) || seen.has(d)) continue;
      seen.add(d);
      want.push({ digest: d, size: l, end: o + l });
    }
    this.aheadEnd = i < chunks.length ? chunks[i]![0] : this.virtualSize;
    if (!want.length) return;
    this.knowPlaces(first, i);
    const got = this.reads.read(want);
    want.forEach((w, k) => {
      const e: Entry = { read: got[k]!, size: w.size, end: w.end };
      this.ahead.set(w.digest, e);
      e.read.ready.catch(() => this.dropAhead(w.digest, e));
    });
  }

  /** The bytes of [offset, offset+length) as views of decoded chunks and of zeros over holes, held until released. */
  async readLeased(offset: number, length: number): Promise<Lease> {
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new VmdnError('E_USAGE', `read past end of disk: ${offset}+${length} > ${this.virtualSize}`);
    }
    const end = offset + length;
    const chunks = this.manifest.chunks;
    const idx: number[] = [];
    for (let i = Math.max(0, lastAtOrBefore(this.starts, offset)); i < chunks.length && chunks[i]![0] < end; i++) if (chunks[i]![0] + chunks[i]![1] > offset) idx.push(i);
    const got = this.entries(idx);
    const held: SlabSlot[] = [];
    for (const e of got) if (e.read.slot) held.push(e.read.slot);
    try {
      this.readAhead(offset, length);
    } catch {
      // reading ahead is a guess: its failure is not this read's (nor may it leak this read's holds)
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      for (const s of held) s.unref();
    };
    try {
      const parts: Uint8Array[] = [];
      const zeros = (n: number) => {
        for (; n > 0; n -= ZEROS.length) parts.push(ZEROS.subarray(0, Math.min(n, ZEROS.length)));
      };
      let at = offset;
      for (let k = 0; k < idx.length; k++) {
        const [o, l] = chunks[idx[k]!]!;
        if (o > at) zeros(o - at);
        const r = got[k]!.read;
        const data = r.data ?? (await r.ready);
        const s = Math.max(o, offset);
        const e = Math.min(o + l, end);
        parts.push(data.subarray(s - o, e - o));
        at = e;
      }
      zeros(end - at);
      return { pieces: parts, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const lease = await this.readLeased(offset, length);
    try {
      const out = new Uint8Array(length);
      let at = 0;
      for (const p of lease.pieces) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    } finally {
      lease.release();
    }
  }

  /**
   * The slab's accounting: with no read in flight and no reply on its way, every hold is
   * the cache's or the read-ahead's, one per entry (`holds === cacheSlots + aheadSlots`).
   */
  slabStats(): { bytes: number; used: number; slots: number; holds: number; cacheSlots: number; aheadSlots: number } {
    const slab = this.reads.slab;
    let cacheSlots = 0;
    let aheadSlots = 0;
    for (const e of this.cache.values()) if (e.read.slot) cacheSlots++;
    for (const e of this.ahead.values()) if (e.read.slot) aheadSlots++;
    return { bytes: slab.buffer.byteLength, used: slab.used, slots: slab.slots, holds: slab.holds, cacheSlots, aheadSlots };
  }

  async close(): Promise<void> {
    for (const [d, e] of [...this.cache]) this.uncache(d, e);
    for (const [d, e] of [...this.ahead]) this.dropAhead(d, e);
    await this.reads.close();
  }
}
