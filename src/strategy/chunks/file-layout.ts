/**
 * File-aware chunk layout: where the chunks strategy must cut so that a
 * file's data yields the same chunks wherever the file sits on the disk.
 *
 * The layout only moves chunk boundaries (and, with `sparsify`, drops blocks
 * no filesystem uses), so a wrong or hostile layout can cost dedup but never
 * correctness: every byte the importer keeps is still chunked and stored.
 */
import type { Disk } from '../../container/disk.js';
import { listVolumes, type Volume } from '../../fs/volumes.js';
import { walkFs } from '../../fs/ext4/walk.js';
import { VmdnError } from '../../errors.js';

export interface ChunkLayout {
  /** Disk offsets where a chunk must end and the next begin (ascending, distinct). */
  cuts: number[];
  /** With sparsify: the only ranges to keep, [start, end) ascending; bytes elsewhere read back as zeros. */
  keep?: Array<[number, number]>;
  /** Regular files whose data was aligned, and their bytes. */
  files: number;
  fileBytes: number;
  /** Per volume: what was understood, or why a volume is chunked as plain data. */
  notes: string[];
}

export interface FileLayoutOptions {
  /** Files smaller than this ride along with their neighbours (too small to be worth an object). */
  minFile: number;
  sparsify?: boolean;
  signal?: AbortSignal;
  /** Volumes (by index) another strategy takes care of. */
  skipVolumes?: Set<number>;
  /** The disk's volumes when the caller has listed them already. */
  volumes?: Volume[];
}

/** A hostile filesystem could claim millions of extents: bound the work, not just the loop. */
export const MAX_CUTS = 1 << 24;

export async function fileAwareLayout(disk: Disk, opts: FileLayoutOptions): Promise<ChunkLayout> {
  const volumes = opts.volumes ?? (await listVolumes(disk)).volumes;
  const cuts: number[] = [];
  const notes: string[] = [];
  // sparsify: keep everything outside readable filesystems, and their used blocks
  const drop: Array<[number, number]> = [];
  const keepInside: Array<[number, number]> = [];
  let files = 0;
  let fileBytes = 0;
  for (const v of volumes) {
    if (opts.skipVolumes?.has(v.index)) continue;
    if (!v.fs) {
      notes.push(`volume ${v.index}: ${v.kind}${v.note ? ` (${v.note})` : ''}, chunked as data`);
      continue;
    }
    const end = v.offset + v.length;
    const seen = new Set<number>();
    let n = 0;
    for await (const { node } of walkFs(v.fs)) {
      opts.signal?.throwIfAborted();
      if (node.type !== 'file' || node.size < opts.minFile || seen.has(node.ino)) continue;
      seen.add(node.ino);
      const extents = await v.fs.fileExtents(node);
      for (const e of extents) {
        // clip to the file size (the slack of the last block is not file data) and the volume
        const len = Math.min(e.length, node.size - e.fileOffset);
        const s = v.offset + e.deviceOffset;
        if (len <= 0 || s < v.offset || s + len > end) continue;
        cuts.push(s, s + len);
        fileBytes += len;
      }
      n++;
      if (cuts.length > MAX_CUTS) throw new VmdnError('E_FORMAT', `volume ${v.index}: more than ${MAX_CUTS} file extents`, { volume: v.index });
    }
    files += n;
    notes.push(`volume ${v.index}: ${v.fs.info.type}, ${n} files aligned`);
    if (opts.sparsify) {
      drop.push([v.offset, end]);
      for (const [a, b] of await v.fs.usedRanges()) keepInside.push([v.offset + a, Math.min(end, v.offset + b)]);
    }
  }
  const sorted = [...new Set(cuts)].sort((a, b) => a - b);
  const layout: ChunkLayout = { cuts: sorted, files, fileBytes, notes };
  if (opts.sparsify) layout.keep = mergeRanges([...complement(mergeRanges(drop), disk.virtualSize), ...keepInside]);
  return layout;
}

/** Sort and merge overlapping or touching ranges. */
export function mergeRanges(ranges: Array<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [s, e] of [...ranges].filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0])) {
    const last = out.at(-1);
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

/** [0, size) minus merged ascending ranges. */
export function complement(ranges: Array<[number, number]>, size: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let pos = 0;
  for (const [s, e] of ranges) {
    if (s > pos) out.push([pos, Math.min(s, size)]);
    pos = Math.max(pos, e);
  }
  if (pos < size) out.push([pos, size]);
  return out;
}

/** Intersection of two merged ascending range lists. */
export function intersectRanges(a: Array<[number, number]>, b: Array<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const s = Math.max(a[i]![0], b[j]![0]);
    const e = Math.min(a[i]![1], b[j]![1]);
    if (e > s) out.push([s, e]);
    if (a[i]![1] < b[j]![1]) i++;
    else j++;
  }
  return out;
}
