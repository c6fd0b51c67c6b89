/**
 * Disk and block layers of `vmdn diff`. Both report byte ranges, bounded in
 * number (the rest is counted, not listed) so a diff of unrelated images
 * stays small. Stored images are compared by chunk digests first and only
 * MiBs whose chunks differ are read; files are compared by reading every MiB
 * either side has allocated (holes on both sides are equal without reading).
 */
import type { Disk } from '../container/disk.js';
import type { PartitionTable } from '../disk/partitions.js';
import type { Manifest } from '../model/manifest.js';
import type { OpenedImage } from './open-image.js';
import type { Volume } from '../fs/volumes.js';

export const MiB = 1 << 20;
export const MAX_RANGES = 1000;

export interface Range { start: number; end: number; kind?: string }
export interface RangeList { ranges: Range[]; count: number; bytes: number; truncated: boolean }

/** Collects [start, end) ranges in ascending order, merging adjacent ones of the same kind. */
export class RangeCollector {
  private readonly list: Range[] = [];
  private last?: Range;
  private count = 0;
  private bytes = 0;
  add(start: number, end: number, kind?: string): void {
    if (end <= start) return;
    this.bytes += end - start;
    if (this.last && this.last.end === start && this.last.kind === kind) {
      this.last.end = end;
      return;
    }
    this.count++;
    this.last = kind === undefined ? { start, end } : { start, end, kind };
    if (this.list.length < MAX_RANGES) this.list.push(this.last);
  }
  result(): RangeList {
    return { ranges: this.list, count: this.count, bytes: this.bytes, truncated: this.count > this.list.length };
  }
}

export interface PartitionChange { index: number; change: 'added' | 'removed' | 'changed'; fields?: string[]; a?: unknown; b?: unknown }

export function diffTables(a: PartitionTable, b: PartitionTable): { header: string[]; partitions: PartitionChange[] } {
  const header = (['scheme', 'sectorSize', 'diskId', 'firstUsableLba', 'lastUsableLba'] as const).filter((k) => a[k] !== b[k]);
  const partitions: PartitionChange[] = [];
  const fields = ['start', 'size', 'type', 'name', 'uuid', 'attributes'] as const;
  const byIndex = (t: PartitionTable) => new Map(t.partitions.map((p) => [p.index, p]));
  const ia = byIndex(a), ib = byIndex(b);
  for (const i of [...new Set([...ia.keys(), ...ib.keys()])].sort((x, y) => x - y)) {
    const pa = ia.get(i), pb = ib.get(i);
    const pick = (p: typeof pa) => p && Object.fromEntries(fields.map((f) => [f, p[f]]));
    if (!pa) partitions.push({ index: i, change: 'added', b: pick(pb) });
    else if (!pb) partitions.push({ index: i, change: 'removed', a: pick(pa) });
    else {
      const changed = fields.filter((f) => pa[f] !== pb[f]);
      if (changed.length) partitions.push({ index: i, change: 'changed', fields: changed, a: pick(pa), b: pick(pb) });
    }
  }
  return { header, partitions };
}

async function allocatedMiBs(disk: Disk, into: Set<number>): Promise<void> {
  for await (const e of disk.extents()) {
    if (e.kind !== 'data') continue;
    for (let m = Math.floor(e.offset / MiB); m * MiB < e.offset + e.length; m++) into.add(m);
  }
}

/** Per MiB, the chunks covering it ("offset:length:digest" joined): equal signatures mean equal bytes. */
function chunkSignatures(m: Manifest): Map<number, string> {
  const out = new Map<number, string>();
  for (const [o, l, d] of m.chunks) {
    for (let i = Math.floor(o / MiB); i * MiB < o + l; i++) out.set(i, (out.get(i) ?? '') + `${o}:${l}:${d};`);
  }
  return out;
}

/** Bytes at [off, off+len) of a disk, zeros past its end (disks of different sizes compare as zero-extended). */
export async function readPadded(disk: Disk, off: number, len: number): Promise<Uint8Array> {
  if (off + len <= disk.virtualSize) return disk.read(off, len);
  const out = new Uint8Array(len);
  if (off < disk.virtualSize) out.set(await disk.read(off, disk.virtualSize - off));
  return out;
}

export async function diffDiskBytes(a: OpenedImage, b: OpenedImage, signal?: AbortSignal): Promise<RangeList & { method: 'chunks' | 'bytes' }> {
  const size = Math.max(a.disk.virtualSize, b.disk.virtualSize);
  const out = new RangeCollector();
  let candidates: number[];
  let method: 'chunks' | 'bytes' = 'bytes';
  if (a.manifest && b.manifest) {
    method = 'chunks';
    const sa = chunkSignatures(a.manifest), sb = chunkSignatures(b.manifest);
    candidates = [...new Set([...sa.keys(), ...sb.keys()])].filter((m) => sa.get(m) !== sb.get(m));
  } else {
    const s = new Set<number>();
    await allocatedMiBs(a.disk, s);
    await allocatedMiBs(b.disk, s);
    candidates = [...s];
  }
  candidates.sort((x, y) => x - y);
  for (const m of candidates) {
    signal?.throwIfAborted();
    const off = m * MiB, len = Math.min(MiB, size - off);
    if (len <= 0) continue;
    const [x, y] = await Promise.all([readPadded(a.disk, off, len), readPadded(b.disk, off, len)]);
    if (!Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(y)) out.add(off, off + len);
  }
  return { ...out.result(), method };
}

/** Subtract/intersect two ascending [start, end) range lists by sweeping their boundaries. */
function sweep(a: Array<[number, number]>, b: Array<[number, number]>, emit: (s: number, e: number, inA: boolean, inB: boolean) => void): void {
  const pts = [...new Set([...a.flat(), ...b.flat()])].sort((x, y) => x - y);
  let i = 0, j = 0;
  for (let k = 0; k + 1 < pts.length; k++) {
    const s = pts[k]!, e = pts[k + 1]!;
    while (i < a.length && a[i]![1] <= s) i++;
    while (j < b.length && b[j]![1] <= s) j++;
    emit(s, e, i < a.length && a[i]![0] <= s, j < b.length && b[j]![0] <= s);
  }
}

/** Used ranges that differ in allocation (kind "only-a"/"only-b") or, used on both sides, in content ("content"). */
export async function diffUsedBlocks(va: Volume, vb: Volume, da: Disk, db: Disk, signal?: AbortSignal): Promise<RangeList> {
  const ua = await va.fs!.usedRanges(), ub = await vb.fs!.usedRanges();
  const bs = Math.max(va.fs!.info.blockSize, 512);
  const spans: Array<{ s: number; e: number; kind: string }> = [];
  sweep(ua, ub, (s, e, inA, inB) => {
    if (inA || inB) spans.push({ s, e, kind: inA && inB ? 'both' : inA ? 'only-a' : 'only-b' });
  });
  const out = new RangeCollector();
  for (const { s, e, kind } of spans) {
    if (kind !== 'both') { out.add(s, e, kind); continue; }
    for (let off = s; off < e; off += MiB) {
      signal?.throwIfAborted();
      const len = Math.min(MiB, e - off);
      const [x, y] = await Promise.all([readPadded(da, off, len), readPadded(db, off, len)]);
      const bx = Buffer.from(x.buffer, x.byteOffset, x.byteLength), by = Buffer.from(y.buffer, y.byteOffset, y.byteLength);
      if (bx.equals(by)) continue;
      // Narrow to filesystem blocks so the report says which blocks, not which MiB.
      for (let p = 0; p < len; p += bs) {
        const q = Math.min(len, p + bs);
        if (bx.compare(by, p, q, p, q) !== 0) out.add(off + p, off + q, 'content');
      }
    }
  }
  return out.result();
}
