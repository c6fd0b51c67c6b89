/**
 * Cut a byte stream that arrives in pieces into content-defined chunks and
 * store them: for the files strategy's small-file stream, where thousands of
 * small files become a few well-compressed objects that still dedup across
 * images (an unchanged run of files gives unchanged chunks).
 */
import type { WritableStore } from '../store/types.js';
import type { Digest } from '../store/digest.js';
import { createChunker, type ChunkerParams } from './chunker.js';
import type { ChunkEntry } from '../model/manifest.js';
import { isZero } from '../util/zero.js';
import { VmdnError } from '../errors.js';

export class StreamChunks {
  readonly entries: ChunkEntry[] = [];
  /** Bytes pushed so far: the offset the next piece starts at. */
  length = 0;
  private carry: Uint8Array = new Uint8Array(0);
  private carryOff = 0;
  private readonly chunker;
  private readonly pending = new Set<Promise<void>>();
  private failed: unknown;

  constructor(
    params: ChunkerParams,
    private readonly store: WritableStore,
    private readonly opts: { signal?: AbortSignal; onAdded?: (d: Digest) => void; onStored?: (bytes: number, storedBytes: number) => void },
  ) {
    this.chunker = createChunker(params);
  }

  async push(data: Uint8Array): Promise<void> {
    this.carry = this.carry.length ? Buffer.concat([this.carry, data]) : data;
    this.length += data.length;
    await this.cut(false);
  }

  async finish(): Promise<ChunkEntry[]> {
    await this.cut(true);
    await Promise.all(this.pending);
    if (this.failed) throw this.failed;
    return this.entries;
  }

  private async cut(final: boolean): Promise<void> {
    let pos = 0;
    while (pos < this.carry.length) {
      const n = this.chunker.next(this.carry.subarray(pos), final);
      if (n === 0) break;
      this.emit(this.carryOff + pos, this.carry.subarray(pos, pos + n));
      pos += n;
    }
    this.carry = this.carry.slice(pos);
    this.carryOff += pos;
    if (this.pending.size >= 16) await Promise.race(this.pending);
    if (this.failed) throw this.failed;
  }

  private emit(offset: number, chunk: Uint8Array): void {
    if (isZero(chunk)) return; // uncovered stream bytes read as zero
    const entry: ChunkEntry = [offset, chunk.length, ''];
    this.entries.push(entry);
    const p = this.store.put(chunk, { signal: this.opts.signal }).then(
      (r) => {
        entry[2] = r.digest;
        if (r.added) {
          this.opts.onAdded?.(r.digest);
          this.opts.onStored?.(r.size, r.storedSize);
        }
      },
      (err) => {
        this.failed ??= err;
      },
    );
    this.pending.add(p);
    p.finally(() => this.pending.delete(p));
  }
}

/** Read a chunked stream back at ascending offsets, fetching a few chunks ahead. */
export class StreamReader {
  private next = 0;
  private readonly loaded: Array<{ entry: ChunkEntry; data: Promise<Uint8Array> }> = [];

  constructor(
    private readonly entries: ChunkEntry[],
    private readonly store: { get(d: Digest, o?: { signal?: AbortSignal }): Promise<Uint8Array> },
    private readonly signal?: AbortSignal,
    private readonly ahead = 16,
  ) {}

  /** `length` bytes at `offset`; offsets must not go backwards past a released chunk. */
  async read(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.alloc(length);
    const end = offset + length;
    const endOf = (e: ChunkEntry) => e[0] + e[1];
    while (this.loaded.length && endOf(this.loaded[0]!.entry) <= offset) this.loaded.shift();
    while (this.next < this.entries.length && endOf(this.entries[this.next]!) <= offset) this.next++;
    // keep `ahead` chunks in flight, and always enough to cover this read
    while (this.next < this.entries.length && (this.loaded.length < this.ahead || endOf(this.loaded.at(-1)!.entry) < end)) {
      const entry = this.entries[this.next++]!;
      const data = this.store.get(entry[2], { signal: this.signal });
      data.catch(() => {}); // surfaced when awaited
      this.loaded.push({ entry, data });
    }
    for (const { entry, data } of this.loaded) {
      if (entry[0] >= end) break;
      if (entry[0] + entry[1] > offset) copyChunkPart(out, offset, entry, await data);
    }
    return out;
  }
}

/** Copy the part of chunk `entry` (holding `bytes`) that overlaps `out`, which starts at stream `offset`. */
export function copyChunkPart(out: Uint8Array, offset: number, entry: ChunkEntry, bytes: Uint8Array): void {
  const [o, l, d] = entry;
  if (bytes.length !== l) throw new VmdnError('E_CORRUPT_OBJECT', `object ${d.slice(0, 12)} has ${bytes.length} bytes, the stream says ${l}`, { digest: d });
  const s = Math.max(o, offset);
  const e = Math.min(o + l, offset + out.length);
  if (e > s) out.set(bytes.subarray(s - o, e - o), s - offset);
}
