/**
 * A stored image seen as a Disk: reads are served from the manifest's chunks
 * (fetched from any ReadableStore, so verified), holes read as zeros. Lets
 * every reader (partitions, filesystems, inspect, diff, and later NBD) work
 * on stored images exactly as on image files.
 */
import type { Disk, Extent } from '../container/disk.js';
import { canGetMany, type GetMany, type HoldsLocally, type ReadableStore } from '../store/types.js';
import type { Manifest } from '../model/manifest.js';
import { VmdnError } from '../errors.js';
import { lastAtOrBefore } from '../util/search.js';
import type { FileSystem } from '../fs/types.js';
import type { KnownFilesystems } from '../fs/volumes.js';

/** Read-only zeros that hole pieces are views of (never handed to anything that writes). */
const ZEROS = new Uint8Array(1 << 20);
/** How far a read may start before or after the furthest end so far and still count as sequential (skipped holes, requests in flight out of order). */
const AHEAD_SLACK = 1 << 20;

export class ManifestDisk implements Disk, KnownFilesystems {
  readonly format = 'vmdn';
  readonly virtualSize: number;
  readonly clusterSize: number;
  /** Chunk start offsets, for binary search. */
  private readonly starts: Float64Array;
  /** Small LRU of decoded chunks: readers touch the same metadata chunk many times. */
  private readonly cache = new Map<string, Promise<Uint8Array>>();

  /** Files-strategy filesystems by disk offset (set by whoever loads their trees). */
  readonly trees = new Map<number, FileSystem>();

  knownFilesystem(offset: number): FileSystem | undefined {
    return this.trees.get(offset);
  }

  constructor(
    private readonly manifest: Manifest,
    private readonly store: ReadableStore,
    private readonly cacheEntries = 64,
    /** Bytes of chunks fetched ahead of sequential reads (0: none). See readAhead(). */
    private readonly aheadBytes = 0,
  ) {
    this.virtualSize = manifest.virtualSize;
    this.clusterSize = manifest.source.clusterSize || 65536;
    this.starts = Float64Array.from(manifest.chunks, (c) => c[0]);
  }

  async *extents(signal?: AbortSignal): AsyncIterable<Extent> {
    let cur: { offset: number; length: number } | null = null;
    for (const [o, l] of this.manifest.chunks) {
      signal?.throwIfAborted();
      if (cur && cur.offset + cur.length === o) cur.length += l;
      else {
        if (cur) yield { ...cur, kind: 'data' };
        cur = { offset: o, length: l };
      }
    }
    if (cur) yield { ...cur, kind: 'data' };
  }

  /** Index of the last chunk starting at or before `offset`, or -1. */
  private find(offset: number): number {
    return lastAtOrBefore(this.starts, offset);
  }

  /** Chunks fetched ahead, by digest, with where they end on the disk (dropped once reads pass them). */
  private readonly ahead = new Map<string, { p: Promise<Uint8Array>; end: number }>();
  /** Furthest end of any read so far, and how far the chunks were fetched ahead. */
  private lastEnd = -1;
  private aheadEnd = 0;

  /**
   * Sequential read-ahead for a client that reads the disk in order in small
   * requests (qemu-img convert over NBD reads each extent a block-status query
   * returns: on the corpus, 2,577 reads of ~200 KiB): when a read starts at or
   * a little past the furthest end read so far, the chunks of the next
   * `aheadBytes` are fetched in one batch while the client is still busy, so
   * its next reads find them decoded. Any other read stops it.
   */
  private readAhead(offset: number, length: number): void {
    if (this.aheadBytes <= 0 || !canGetMany(this.store)) return;
    const end = offset + length;
    const sequential = offset >= this.lastEnd - AHEAD_SLACK && offset <= this.lastEnd + AHEAD_SLACK;
    this.lastEnd = Math.max(this.lastEnd, end);
    if (!sequential) {
      this.ahead.clear();
      this.aheadEnd = 0;
      return;
    }
    for (const [d, a] of this.ahead) if (a.end <= offset - AHEAD_SLACK) this.ahead.delete(d);
    if (this.aheadEnd >= end + this.aheadBytes / 2) return;
    const chunks = this.manifest.chunks;
    const from = Math.max(end, this.aheadEnd);
    const ds: string[] = [];
    const ends: number[] = [];
    let bytes = 0;
    const local = (this.store as Partial<HoldsLocally>).holdsLocally?.bind(this.store);
    let i = Math.max(0, this.find(from));
    for (; i < chunks.length && bytes < this.aheadBytes; i++) {
      const [o, l, d] = chunks[i]!;
      if (o + l <= from) continue;
      bytes += l;
      if (this.cache.has(d) || this.ahead.has(d) || ds.includes(d) || (local && !local(d))) continue;
      ds.push(d);
      ends.push(o + l);
    }
    this.aheadEnd = i < chunks.length ? chunks[i]![0] : this.virtualSize;
    if (!ds.length) return;
    const all = this.store.getMany(ds);
    ds.forEach((d, k) => {
      const p = all.then((r) => {
        const x = r[k]!;
        if (x instanceof Error) throw x;
        return x;
      });
      p.catch(() => this.ahead.delete(d)); // a read that needs it fetches it again, and reports the error
      this.ahead.set(d, { p, end: ends[k]! });
    });
  }

  private chunk(digest: string): Promise<Uint8Array> {
    const a = this.ahead.get(digest);
    if (a && !this.cache.has(digest)) {
      this.ahead.delete(digest);
      this.cache.set(digest, a.p);
      if (this.cache.size > this.cacheEntries) this.cache.delete(this.cache.keys().next().value!);
    }
    let p = this.cache.get(digest);
    if (p) {
      this.cache.delete(digest); // refresh LRU position
      this.cache.set(digest, p);
      return p;
    }
    p = this.store.get(digest);
    p.catch(() => this.cache.delete(digest));
    this.cache.set(digest, p);
    if (this.cache.size > this.cacheEntries) this.cache.delete(this.cache.keys().next().value!);
    return p;
  }

  /**
   * chunk() for each digest, those not cached fetched together when the store
   * can (GetMany: a few worker trips for a 2 MiB NBD read, not one per chunk).
   */
  private chunkAll(digests: string[]): Array<Promise<Uint8Array>> {
    const many: GetMany | undefined = canGetMany(this.store) ? this.store : undefined;
    const missing = many ? [...new Set(digests.filter((d) => !this.cache.has(d) && !this.ahead.has(d)))] : [];
    if (many && missing.length > 1) {
      const all = many.getMany(missing);
      missing.forEach((d, i) => {
        const p = all.then((r) => {
          const x = r[i]!;
          if (x instanceof Error) throw x;
          return x;
        });
        p.catch(() => this.cache.delete(d));
        this.cache.set(d, p);
      });
      while (this.cache.size > Math.max(this.cacheEntries, missing.length)) this.cache.delete(this.cache.keys().next().value!);
    }
    return digests.map((d) => this.chunk(d));
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new VmdnError('E_USAGE', `read past end of disk: ${offset}+${length} > ${this.virtualSize}`);
    }
    const out = new Uint8Array(length);
    const end = offset + length;
    let i = Math.max(0, this.find(offset));
    const chunks = this.manifest.chunks;
    const first = i;
    const ds: string[] = [];
    for (; i < chunks.length && chunks[i]![0] < end; i++) if (chunks[i]![0] + chunks[i]![1] > offset) ds.push(chunks[i]![2]);
    const got = this.chunkAll(ds);
    this.readAhead(offset, length);
    const parts: Array<Promise<void>> = [];
    for (i = first; i < chunks.length && chunks[i]![0] < end; i++) {
      const [o, l] = chunks[i]!;
      if (o + l <= offset) continue;
      parts.push(
        got.shift()!.then((data) => {
          const s = Math.max(o, offset);
          const e = Math.min(o + l, end);
          out.set(data.subarray(s - o, e - o), s - offset);
        }),
      );
    }
    await Promise.all(parts);
    return out;
  }

  /**
   * The same bytes as read(), as views of the decoded chunks (and of one
   * shared zero buffer over holes) in order, nothing copied: for a caller
   * that only passes them on (an NBD reply). The views must not be written to.
   */
  async readPieces(offset: number, length: number): Promise<Uint8Array[]> {
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new VmdnError('E_USAGE', `read past end of disk: ${offset}+${length} > ${this.virtualSize}`);
    }
    const end = offset + length;
    const chunks = this.manifest.chunks;
    const parts: Array<Uint8Array | Promise<Uint8Array>> = [];
    const zeros = (n: number) => {
      for (; n > 0; n -= ZEROS.length) parts.push(ZEROS.subarray(0, Math.min(n, ZEROS.length)));
    };
    let at = offset;
    const first = Math.max(0, this.find(offset));
    const ds: string[] = [];
    for (let i = first; i < chunks.length && chunks[i]![0] < end; i++) if (chunks[i]![0] + chunks[i]![1] > offset) ds.push(chunks[i]![2]);
    const got = this.chunkAll(ds);
    this.readAhead(offset, length);
    for (let i = first; i < chunks.length && chunks[i]![0] < end; i++) {
      const [o, l] = chunks[i]!;
      if (o + l <= offset) continue;
      if (o > at) zeros(o - at);
      const s = Math.max(o, offset);
      const e = Math.min(o + l, end);
      parts.push(got.shift()!.then((data) => data.subarray(s - o, e - o)));
      at = e;
    }
    zeros(end - at);
    return Promise.all(parts);
  }

  async close(): Promise<void> {
    this.cache.clear();
    this.ahead.clear();
  }
}
