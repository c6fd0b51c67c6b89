/**
 * What the differencing-disk readers (VHD, VHDX) share: reading through to
 * the parent, and walking a block's sector bitmap in runs of sectors that are
 * this file's or the parent's. Only the bitmap layouts differ.
 */
import type { Disk, Extent } from './disk.js';

/** The parent of a differencing disk, as its child reads it. */
export class ParentView {
  /** The parent's extents, listed once on first use. */
  private all: Extent[] | null = null;

  constructor(private readonly disk: Disk) {}

  /** The parent's extents clipped to [start, end). */
  async extentsIn(start: number, end: number, signal?: AbortSignal): Promise<Extent[]> {
    if (!this.all) {
      this.all = [];
      for await (const e of this.disk.extents(signal)) this.all.push(e);
    }
    const out: Extent[] = [];
    for (const e of this.all) {
      if (e.offset >= end) break;
      const s = Math.max(start, e.offset);
      const t = Math.min(end, e.offset + e.length);
      if (t > s) out.push({ offset: s, length: t - s, kind: e.kind });
    }
    return out;
  }

  /** Read `n` bytes at `pos` into `out[at..]`; past the end of a smaller parent reads as zeros. */
  async readInto(out: Buffer, at: number, pos: number, n: number): Promise<void> {
    const m = Math.min(n, this.disk.virtualSize - pos);
    if (m > 0) out.set(await this.disk.read(pos, m), at);
  }
}

/**
 * Split [from, from+n) of a block into runs of whole `sector`s (clipped to the
 * range) that are all this file's (`mine(sector index)`) or all the parent's,
 * and hand each run [p, q) to `run` in order.
 */
export async function sectorRuns(
  from: number,
  n: number,
  sector: number,
  mine: (s: number) => boolean,
  run: (p: number, q: number, own: boolean) => Promise<void>,
): Promise<void> {
  let p = from;
  while (p < from + n) {
    const own = mine(Math.floor(p / sector));
    let q = (Math.floor(p / sector) + 1) * sector;
    while (q < from + n && mine(q / sector) === own) q += sector;
    q = Math.min(q, from + n);
    await run(p, q, own);
    p = q;
  }
}
