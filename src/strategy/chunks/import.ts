/**
 * Chunks strategy, import side: split a virtual disk's allocated data into
 * content-addressed chunks, skipping holes and long zero runs, and store each
 * distinct chunk once. The result is a bit-exact manifest.
 */
import type { Disk } from '../../container/disk.js';
import type { WritableStore } from '../../store/types.js';
import type { Digest } from '../../store/digest.js';
import { createChunker, formatChunkerSpec, type ChunkerParams } from '../chunker.js';
import { MANIFEST_KIND, MANIFEST_VERSION, type ChunkEntry, type CutsBy, type Manifest } from '../../model/manifest.js';
import { throttle, type OnProgress } from '../../util/progress.js';
import { isZero, zeroRuns } from '../../util/zero.js';
import { gcEvery } from '../../util/gc.js';
import { intersectRanges, type ChunkLayout } from './file-layout.js';

export interface ChunkImportOptions {
  chunker: ChunkerParams;
  signal?: AbortSignal;
  onProgress?: OnProgress;
  /** Zero runs at least this long (bytes, multiple of 4 KiB) split data and are not stored. */
  zeroCut?: number;
  readBlock?: number;
  maxInflight?: number;
  /** File-aware cuts and, with sparsify, the ranges to keep (strategy/chunks/file-layout.ts). */
  layout?: Pick<ChunkLayout, 'cuts' | 'keep'>;
  /** Recorded in the manifest: how the layout was made, so seeds can be cut the same way. */
  cutsBy?: CutsBy;
  /** Shared GC pacing when many small imports run (one per file): see util/gc.ts. */
  collect?: (bytes: number) => void;
  /** Called for each object this import newly added to the store. */
  onAdded?: (digest: Digest) => void;
}

export interface ChunkImportStats {
  allocated: number;
  dataBytes: number;
  chunks: number;
  distinctChunks: number;
  newObjects: number;
  newBytes: number;
  newStoredBytes: number;
}

const DEFAULT_ZERO_CUT = 64 * 1024;
const DEFAULT_READ_BLOCK = 2 * 1024 * 1024;
const READ_AHEAD = 4;

/** Contiguous allocated regions [start, end), adjacent data extents merged. */
export async function dataRegions(disk: Disk, signal?: AbortSignal): Promise<Array<[number, number]>> {
  const out: Array<[number, number]> = [];
  for await (const e of disk.extents(signal)) {
    if (e.kind !== 'data') continue;
    const last = out.at(-1);
    if (last && last[1] === e.offset) last[1] += e.length;
    else out.push([e.offset, e.offset + e.length]);
  }
  return out;
}

export async function importChunks(disk: Disk, store: WritableStore, opts: ChunkImportOptions): Promise<{ manifest: Manifest; stats: ChunkImportStats }> {
  const { signal } = opts;
  const zeroCut = opts.zeroCut ?? DEFAULT_ZERO_CUT;
  const readBlock = opts.readBlock ?? DEFAULT_READ_BLOCK;
  const maxInflight = opts.maxInflight ?? 24;
  const chunker = createChunker(opts.chunker);
  const fixed = opts.chunker.kind === 'fixed' ? opts.chunker.avg : 0;
  const progress = throttle(opts.onProgress);

  const regions = await dataRegions(disk, signal);
  const allocated = regions.reduce((n, [s, e]) => n + e - s, 0);
  const kept = opts.layout?.keep ? intersectRanges(regions, opts.layout.keep) : regions;
  const pieces = splitAt(kept, opts.layout?.cuts ?? []);
  const total = kept.reduce((n, [s, e]) => n + e - s, 0);
  const stats: ChunkImportStats = { allocated, dataBytes: 0, chunks: 0, distinctChunks: 0, newObjects: 0, newBytes: 0, newStoredBytes: 0 };
  const entries: ChunkEntry[] = [];
  const inflight = new Set<Promise<void>>();
  let firstError: unknown;

  const emit = async (offset: number, chunk: Uint8Array): Promise<void> => {
    if (isZero(chunk)) return;
    const entry: ChunkEntry = [offset, chunk.length, ''];
    entries.push(entry);
    stats.chunks++;
    stats.dataBytes += chunk.length;
    // the store hashes (in its workers when it has them) and fills in the digest
    const p = store.put(chunk, { signal }).then(
      (r) => {
        entry[2] = r.digest;
        if (r.added) {
          opts.onAdded?.(r.digest);
          stats.newObjects++;
          stats.newBytes += r.size;
          stats.newStoredBytes += r.storedSize;
        }
      },
      (err) => {
        firstError ??= err;
      },
    );
    inflight.add(p);
    p.finally(() => inflight.delete(p));
    if (inflight.size >= maxInflight) await Promise.race(inflight);
    if (firstError) throw firstError;
  };

  // Pending data not yet cut into chunks: `carry` starts at virtual offset `carryOff`.
  let carry: Uint8Array = new Uint8Array(0);
  let carryOff = 0;
  let pendingZeros = 0; // zero bytes seen after the carry, not yet known to be a long run

  const cut = async (final: boolean): Promise<void> => {
    let pos = 0;
    while (pos < carry.length) {
      const rest = carry.subarray(pos);
      let n: number;
      if (fixed) {
        // fixed chunks stay aligned to absolute multiples of their size
        const want = fixed - ((carryOff + pos) % fixed);
        n = rest.length >= want ? want : final ? rest.length : 0;
      } else {
        n = chunker.next(rest, final);
      }
      if (n === 0) break;
      await emit(carryOff + pos, rest.subarray(0, n));
      pos += n;
    }
    carry = pos === carry.length ? new Uint8Array(0) : carry.slice(pos);
    carryOff += pos;
  };
  const append = (offset: number, data: Uint8Array): void => {
    if (carry.length === 0) {
      // leading short zeros need not be stored: the run starts at the data
      carryOff = offset;
      carry = data;
    } else {
      carry = concat(carry, pendingZeros, data);
    }
    pendingZeros = 0;
  };

  let done = 0;
  const collect = opts.collect ?? gcEvery();
  // Reads run ahead across piece boundaries: with file-aware cuts a piece can be one small file.
  const reads = readPlan(pieces, readBlock);
  const ahead: Array<Promise<Uint8Array>> = [];
  let r = 0;
  const fill = (): void => {
    while (ahead.length < READ_AHEAD && r + ahead.length < reads.length) {
      const q = reads[r + ahead.length]!;
      ahead.push(disk.read(q.offset, q.length));
    }
  };
  for (; r < reads.length; ) {
    signal?.throwIfAborted();
    fill();
    const { offset: off, first } = reads[r]!;
    const block = await ahead.shift()!;
    r++;
    if (first) {
      // a gap between pieces, or a forced cut, ends the current run
      await cut(true);
      pendingZeros = 0;
    }
    const runs = [...zeroRuns(block)];
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i]!;
      if (run.zero) {
        pendingZeros += run.length;
        if (pendingZeros >= zeroCut && carry.length > 0) await cut(true);
        continue;
      }
      if (pendingZeros >= zeroCut) pendingZeros = 0;
      // take following short zero runs and data in one slice: they are contiguous in the block
      let endRun = i;
      while (endRun + 2 < runs.length && runs[endRun + 1]!.length < zeroCut) endRun += 2;
      const last = runs[endRun]!;
      append(off + run.start, block.subarray(run.start, last.start + last.length));
      await cut(false);
      i = endRun;
    }
    done += block.length;
    collect(block.length);
    progress?.({ phase: 'import', done, total, unit: 'bytes' });
  }
  await cut(true);
  await Promise.all(inflight);
  if (firstError) throw firstError;
  stats.distinctChunks = new Set(entries.map((e) => e[2])).size;

  const manifest: Manifest = {
    kind: MANIFEST_KIND,
    version: MANIFEST_VERSION,
    virtualSize: disk.virtualSize,
    source: { format: disk.format, clusterSize: disk.clusterSize },
    chunker: formatChunkerSpec(opts.chunker),
    allocated,
    chunks: entries,
  };
  if (opts.cutsBy) manifest.cuts = opts.cutsBy;
  return { manifest, stats };
}

/** carry + `zeros` zero bytes + data, in one new buffer. */
function concat(carry: Uint8Array, zeros: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(carry.length + zeros + data.length);
  out.set(carry, 0);
  out.set(data, carry.length + zeros);
  return out;
}

/** Ranges split at every cut inside them (cuts ascending). */
export function splitAt(ranges: Array<[number, number]>, cuts: number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let c = 0;
  for (const [s, e] of ranges) {
    let pos = s;
    while (c < cuts.length && cuts[c]! <= pos) c++;
    while (c < cuts.length && cuts[c]! < e) {
      out.push([pos, cuts[c]!]);
      pos = cuts[c]!;
      c++;
    }
    out.push([pos, e]);
  }
  return out;
}

interface Read {
  offset: number;
  length: number;
  /** First read of a piece: the chunker restarts here. */
  first: boolean;
}

function readPlan(pieces: Array<[number, number]>, readBlock: number): Read[] {
  const out: Read[] = [];
  for (const [s, e] of pieces) {
    for (let off = s; off < e; off += readBlock) out.push({ offset: off, length: Math.min(readBlock, e - off), first: off === s });
  }
  return out;
}
