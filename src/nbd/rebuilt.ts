/**
 * A files/packages-strategy image as a Disk that reads exactly what `vmdn
 * export` writes, without rebuilding it first in full. Each filesystem's
 * metadata is built as export builds it (strategy/files buildFsMetadata:
 * mke2fs over the staged tree, allocation, fixups) into a sparse work file,
 * but the big ("direct") files' content is left out: their physical block
 * runs are kept, each mapped to the file's chunks. A read is then: the
 * manifest's chunks outside the filesystems (ManifestDisk), the work file
 * inside them, and over a direct file's blocks the bytes of its chunks,
 * fetched on demand through the store (verified by hash; a DemandStore when
 * served --from an origin, so a read fetches only what it touches).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Disk, Extent } from '../container/disk.js';
import type { ReadableStore } from '../store/types.js';
import type { ChunkEntry, FsRebuild, Manifest } from '../model/manifest.js';
import { ManifestDisk } from '../images/manifest-disk.js';
import { buildFsMetadata } from '../strategy/files/export.js';
import { VmdnError } from '../errors.js';
import { ChunkCache } from './chunk-cache.js';

/** A physically contiguous piece of a direct file: blocks [physical, physical+length) hold its logical blocks from `logical`. */
interface ContentRun {
  physical: number;
  length: number;
  logical: number;
  /** The file's chunks, ascending by offset. */
  chunks: ChunkEntry[];
}

interface BuiltFs {
  /** Where the filesystem starts on the disk, and the bytes its built image covers there. */
  offset: number;
  length: number;
  blockSize: number;
  file: fsp.FileHandle;
  /** Ascending by physical block, disjoint. */
  runs: ContentRun[];
}

export interface RebuiltStats {
  /** Time to build every filesystem's metadata (before the first read can be served), ms. */
  buildMs: number;
  /** Direct files, whose content is read on demand. */
  directFiles: number;
}

export class RebuiltDisk implements Disk {
  readonly format = 'vmdn';
  readonly virtualSize: number;
  readonly clusterSize: number;

  private constructor(
    private readonly outside: ManifestDisk,
    private readonly fss: BuiltFs[],
    private readonly chunks: ChunkCache,
    readonly stats: RebuiltStats,
  ) {
    this.virtualSize = outside.virtualSize;
    this.clusterSize = outside.clusterSize;
  }

  /** Build every filesystem of `m` into `workDir` (a private directory the caller removes after close). */
  static async open(m: Manifest, store: ReadableStore, workDir: string, cacheEntries: number, signal?: AbortSignal): Promise<RebuiltDisk> {
    const t0 = Date.now();
    const fss: BuiltFs[] = [];
    let directFiles = 0;
    try {
      for (const f of [...(m.filesystems ?? [])].sort((a, b) => a.offset - b.offset)) {
        const built = await buildOne(f, store, workDir, signal);
        fss.push(built.fs);
        directFiles += built.directFiles;
      }
    } catch (err) {
      await Promise.allSettled(fss.map((f) => f.file.close()));
      throw err;
    }
    return new RebuiltDisk(new ManifestDisk(m, store, cacheEntries), fss, new ChunkCache(store, cacheEntries), { buildMs: Date.now() - t0, directFiles });
  }

  /** Conservatively all data: what reads as zeros is known only by reading. */
  async *extents(): AsyncIterable<Extent> {
    if (this.virtualSize) yield { offset: 0, length: this.virtualSize, kind: 'data' };
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    // the manifest's chunks never overlap a filesystem: inside one it reads zeros, filled in below
    const out = await this.outside.read(offset, length);
    const end = offset + length;
    const parts: Array<Promise<void>> = [];
    for (const f of this.fss) {
      const s = Math.max(offset, f.offset);
      const e = Math.min(end, f.offset + f.length);
      if (s >= e) continue;
      await readFull(f.file, out, s - offset, e - s, s - f.offset);
      parts.push(...this.content(f, out, offset, s - f.offset, e - f.offset));
    }
    await Promise.all(parts);
    return out;
  }

  /** Direct files' chunk bytes over the filesystem range [a, b) (filesystem offsets) of `out` (at disk offset `base`). */
  private content(f: BuiltFs, out: Uint8Array, base: number, a: number, b: number): Array<Promise<void>> {
    const bs = f.blockSize;
    const parts: Array<Promise<void>> = [];
    for (let i = firstRunEnding(f.runs, Math.floor(a / bs)); i < f.runs.length && f.runs[i]!.physical * bs < b; i++) {
      const r = f.runs[i]!;
      const ra = Math.max(a, r.physical * bs);
      const rb = Math.min(b, (r.physical + r.length) * bs);
      if (ra >= rb) continue;
      // file offset = filesystem offset + shift, inside this run
      const shift = (r.logical - r.physical) * bs;
      const fa = ra + shift;
      const fb = rb + shift;
      for (let c = firstChunkEnding(r.chunks, fa); c < r.chunks.length && r.chunks[c]![0] < fb; c++) {
        const [co, cl, digest] = r.chunks[c]!;
        const x = Math.max(fa, co);
        const y = Math.min(fb, co + cl);
        if (x >= y) continue;
        parts.push(this.chunks.get(digest, cl).then((data) => out.set(data.subarray(x - co, y - co), f.offset + x - shift - base)));
      }
    }
    return parts;
  }

  async close(): Promise<void> {
    this.chunks.clear();
    await this.outside.close();
    await Promise.allSettled(this.fss.map((f) => f.file.close()));
  }
}

async function buildOne(f: FsRebuild, store: ReadableStore, workDir: string, signal?: AbortSignal): Promise<{ fs: BuiltFs; directFiles: number }> {
  const bs = f.params.blockSize;
  const imgLen = f.params.blocksCount * bs;
  if (imgLen > f.length) throw new VmdnError('E_MANIFEST', `filesystem ${f.index}: ${imgLen} bytes of blocks in a ${f.length}-byte region`);
  const file = path.join(workDir, `fs${f.index}.img`);
  const { records, direct } = await buildFsMetadata(f, store, { file, offset: 0, length: imgLen }, workDir, signal);
  const runs: ContentRun[] = [];
  direct?.indices.forEach((i, k) => {
    const chunks = [...(records[i]!.chunks ?? [])].sort((x, y) => x[0] - y[0]);
    for (const r of direct.maps[k]!.runs) runs.push({ physical: r.physical, length: r.length, logical: r.logical, chunks });
  });
  runs.sort((x, y) => x.physical - y.physical);
  for (let i = 1; i < runs.length; i++) {
    if (runs[i - 1]!.physical + runs[i - 1]!.length > runs[i]!.physical) throw new VmdnError('E_INTERNAL', `filesystem ${f.index}: two files share block ${runs[i]!.physical}`);
  }
  return { fs: { offset: f.offset, length: imgLen, blockSize: bs, file: await fsp.open(file, 'r'), runs }, directFiles: direct?.indices.length ?? 0 };
}

/** Index of the first run that ends after block `b`. */
function firstRunEnding(runs: ContentRun[], b: number): number {
  let lo = 0;
  for (let hi = runs.length; lo < hi; ) {
    const mid = (lo + hi) >>> 1;
    if (runs[mid]!.physical + runs[mid]!.length <= b) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Index of the first chunk that ends after file offset `o`. */
function firstChunkEnding(chunks: ChunkEntry[], o: number): number {
  let lo = 0;
  for (let hi = chunks.length; lo < hi; ) {
    const mid = (lo + hi) >>> 1;
    if (chunks[mid]![0] + chunks[mid]![1] <= o) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

async function readFull(fh: fsp.FileHandle, out: Uint8Array, at: number, len: number, pos: number): Promise<void> {
  while (len > 0) {
    const { bytesRead } = await fh.read(out, at, len, pos);
    // past the file's end (mke2fs leaves it shorter when the last blocks are unused): zeros, as out already holds
    if (bytesRead <= 0) return;
    at += bytesRead;
    len -= bytesRead;
    pos += bytesRead;
  }
}
