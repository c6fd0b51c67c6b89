/**
 * qcow2 (v2 and v3) reader: uncompressed, deflate and zstd clusters, zero
 * clusters, extended L2 subclusters and backing chains. Each layer answers
 * for its own clusters and delegates unallocated ranges to its backing disk,
 * so layers with different cluster sizes compose without a common grid.
 */
import fs from 'node:fs/promises';
import type { Disk, Extent } from '../disk.js';
import { VmdnError } from '../../errors.js';
import { parseQcow2Header, clusterBitsOf, HEADER_PROBE_BYTES, type Qcow2Header } from './header.js';
import { L2Map, readExact, type Run } from './tables.js';
import { deflateDecompressor, zstdDecompressor, type Decompress } from './decompress.js';
import { openBacking } from './backing.js';
import { openImageFile } from '../image-file.js';
import { ExtentMerger, readUpTo, checkRead } from '../io.js';

export interface Qcow2OpenOptions {
  /**
   * Real paths of the images that (transitively) name this one as backing
   * file, nearest last. Used for loop detection and the depth limit; callers
   * opening a top-level image leave it out.
   */
  readonly chain?: readonly string[];
  /** Backing files trusted outside the image's directory (default: the process's list, see qcow2-backing.ts). */
  readonly allowBacking?: readonly string[];
}

export class Qcow2Disk implements Disk {
  readonly format = 'qcow2';
  readonly virtualSize: number;
  readonly clusterSize: number;
  private readonly decompress: Decompress;
  private lastCluster: { host: number; data: Uint8Array } | null = null;
  /** The backing disk's extents, materialised once: ranges of this layer query them by binary search. */
  private backingExtents: Extent[] | null = null;

  private constructor(
    private readonly fh: fs.FileHandle,
    readonly path: string,
    readonly header: Qcow2Header,
    private readonly fileSize: number,
    private readonly map: L2Map,
    /** The next image in the chain, or null. Owned: closed with this disk. */
    readonly backing: Disk | null,
  ) {
    this.virtualSize = header.virtualSize;
    this.clusterSize = header.clusterSize;
    this.decompress = header.compression === 'zstd' ? zstdDecompressor(header.clusterSize) : deflateDecompressor(header.clusterSize);
  }

  static async open(path: string, opts: Qcow2OpenOptions = {}): Promise<Qcow2Disk> {
    const { fh, size: fileSize } = await openImageFile(path);
    let backing: Disk | null = null;
    try {
      const probe = await readUpTo(fh, 0, Math.min(fileSize, HEADER_PROBE_BYTES));
      const bits = clusterBitsOf(probe, path, fileSize);
      const headBuf = await readUpTo(fh, 0, Math.min(fileSize, 2 ** bits));
      const header = parseQcow2Header(headBuf, path, fileSize);
      const map = await L2Map.load(fh, path, header, fileSize);
      if (header.backingFile !== null) {
        backing = await openBacking(path, header.backingFile, header.backingFormat, opts.chain ?? [], Qcow2Disk.open, opts.allowBacking);
      }
      return new Qcow2Disk(fh, path, header, fileSize, map, backing);
    } catch (err) {
      await backing?.close().catch(() => {});
      await fh.close();
      throw err;
    }
  }

  async *extents(signal?: AbortSignal): AsyncIterable<Extent> {
    const m = new ExtentMerger();
    for await (const run of this.map.runs(0, this.virtualSize)) {
      signal?.throwIfAborted();
      if (run.kind === 'data' || run.kind === 'compressed') m.add(run.start, run.length, 'data');
      else if (run.kind === 'zero') m.add(run.start, run.length, 'zero');
      else if (this.backing) {
        for (const e of await this.backingIn(run.start, run.start + run.length, signal)) m.add(e.offset, e.length, e.kind);
      }
      yield* m.done.splice(0);
    }
    m.finish();
    yield* m.done;
  }

  /** Backing extents clipped to [start, end). */
  private async backingIn(start: number, end: number, signal?: AbortSignal): Promise<Extent[]> {
    const b = this.backing!;
    this.backingExtents ??= await collect(b.extents(signal));
    const list = this.backingExtents;
    end = Math.min(end, b.virtualSize);
    // First extent ending after `start`.
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid].offset + list[mid].length <= start) lo = mid + 1;
      else hi = mid;
    }
    const out: Extent[] = [];
    for (let i = lo; i < list.length && list[i].offset < end; i++) {
      const s = Math.max(start, list[i].offset);
      const e = Math.min(end, list[i].offset + list[i].length);
      if (e > s) out.push({ offset: s, length: e - s, kind: list[i].kind });
    }
    return out;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRead(offset, length, this.virtualSize, this.path);
    const out = Buffer.alloc(length); // zeroed: zero and hole runs need no work
    for await (const run of this.map.runs(offset, offset + length)) {
      await this.fill(out, run, offset);
    }
    return out;
  }

  private async fill(out: Buffer, run: Run, base: number): Promise<void> {
    const at = run.start - base;
    switch (run.kind) {
      case 'zero':
        return;
      case 'data': {
        // A host cluster may end past EOF (qemu does not always write whole clusters); that tail reads as zeros.
        const n = Math.min(run.length, this.fileSize - run.host);
        if (n > 0) await readInto(this.fh, this.path, out, at, n, run.host);
        return;
      }
      case 'compressed': {
        const cluster = await this.compressedCluster(run);
        const from = run.start - run.clusterStart;
        out.set(cluster.subarray(from, from + run.length), at);
        return;
      }
      case 'unalloc': {
        if (!this.backing) return;
        // Past the end of a smaller backing file reads as zeros.
        const n = Math.min(run.length, this.backing.virtualSize - run.start);
        if (n > 0) out.set(await this.backing.read(run.start, n), at);
        return;
      }
    }
  }

  private async compressedCluster(run: Run): Promise<Uint8Array> {
    if (this.lastCluster?.host === run.host) return this.lastCluster.data;
    const n = Math.min(run.csize, this.fileSize - run.host);
    const src = await readExact(this.fh, this.path, run.host, n);
    const data = this.decompress(src, `${this.path} (guest offset ${run.clusterStart})`);
    this.lastCluster = { host: run.host, data };
    return data;
  }

  async close(): Promise<void> {
    try {
      await this.backing?.close();
    } finally {
      await this.fh.close();
    }
  }
}

async function collect(it: AsyncIterable<Extent>): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const e of it) out.push(e);
  return out;
}

async function readInto(fh: fs.FileHandle, path: string, out: Buffer, at: number, length: number, pos: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(out, at + done, length - done, pos + done);
    if (bytesRead === 0) throw new VmdnError('E_TRUNCATED', `${path}: file shrank while reading`, { path });
    done += bytesRead;
  }
}
