/**
 * A stored image seen as a Disk: reads are served from the manifest's chunks
 * (fetched from any ReadableStore, so verified), holes read as zeros. Lets
 * every reader (partitions, filesystems, inspect, diff, and later NBD) work
 * on stored images exactly as on image files.
 */
import type { Disk, Extent } from '../container/disk.js';
import type { ReadableStore } from '../store/types.js';
import type { Manifest } from '../model/manifest.js';
import { VmdnError } from '../errors.js';
import { lastAtOrBefore } from '../util/search.js';
import type { FileSystem } from '../fs/types.js';
import type { KnownFilesystems } from '../fs/volumes.js';

/** Read-only zeros that hole pieces are views of (never handed to anything that writes). */
const ZEROS = new Uint8Array(1 << 20);

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

  private chunk(digest: string): Promise<Uint8Array> {
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

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new VmdnError('E_USAGE', `read past end of disk: ${offset}+${length} > ${this.virtualSize}`);
    }
    const out = new Uint8Array(length);
    const end = offset + length;
    let i = Math.max(0, this.find(offset));
    const chunks = this.manifest.chunks;
    const parts: Array<Promise<void>> = [];
    for (; i < chunks.length && chunks[i]![0] < end; i++) {
      const [o, l, d] = chunks[i]!;
      if (o + l <= offset) continue;
      parts.push(
        this.chunk(d).then((data) => {
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
    for (let i = Math.max(0, this.find(offset)); i < chunks.length && chunks[i]![0] < end; i++) {
      const [o, l, d] = chunks[i]!;
      if (o + l <= offset) continue;
      if (o > at) zeros(o - at);
      const s = Math.max(o, offset);
      const e = Math.min(o + l, end);
      parts.push(this.chunk(d).then((data) => data.subarray(s - o, e - o)));
      at = e;
    }
    zeros(end - at);
    return Promise.all(parts);
  }

  async close(): Promise<void> {
    this.cache.clear();
  }
}
