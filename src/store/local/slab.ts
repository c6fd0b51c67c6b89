/**
 * A slab of shared memory that codec workers decode objects into, in slots
 * the main thread hands out and takes back by reference count. Why: an NBD
 * server reading a whole image got every decoded object as a fresh buffer
 * moved from a worker; hundreds of MB of short-lived external memory made V8
 * run ~40 full collections per 500 MB read. Here the same bytes are reused.
 *
 * A slot is free again only when every holder let go: the cache entry that
 * owns it, each reply whose bytes are still queued on a socket, and the
 * worker decoding into it (slab-reads.ts takes that reference until the
 * worker answers). Reusing it earlier would let a worker overwrite bytes a
 * client has not been sent yet.
 */
import { VmdnError } from '../../errors.js';

/** Slots are whole units: fewer free extents to keep, little lost (objects are ~36 KiB). */
const UNIT = 1024;

export class SlabSlot {
  /** The slot's bytes, a view of the slab (shared with the workers). */
  readonly view: Buffer;
  private refs = 1;

  constructor(private readonly slab: Slab, readonly at: number, readonly size: number, private readonly units: number) {
    this.view = Buffer.from(slab.buffer, at, size);
  }

  get holders(): number {
    return this.refs;
  }

  /** One more holder; a slot already given back cannot be taken again (a bug, not a race to paper over). */
  ref(): this {
    if (this.refs <= 0) throw new VmdnError('E_INTERNAL', 'slab slot used after it was freed');
    this.refs++;
    this.slab.holds++;
    return this;
  }

  /** A holder lets go; the last one gives the slot back to the slab. */
  unref(): void {
    if (this.refs <= 0) throw new VmdnError('E_INTERNAL', 'slab slot released twice');
    this.slab.holds--;
    if (--this.refs === 0) this.slab.free(this.at, this.units);
  }
}

export class Slab {
  readonly buffer: SharedArrayBuffer;
  /** Free extents [at, units) in units, sorted by offset, neighbours merged. */
  private readonly freeList: Array<{ at: number; units: number }>;
  private usedUnits = 0;
  /** Live slots, and the holds on them all (every holder counts once): for tests and checks that nothing leaks. */
  slots = 0;
  holds = 0;

  constructor(readonly bytes: number) {
    const units = Math.floor(bytes / UNIT);
    this.buffer = new SharedArrayBuffer(units * UNIT);
    this.freeList = units > 0 ? [{ at: 0, units }] : [];
  }

  /** Bytes held by live slots. */
  get used(): number {
    return this.usedUnits * UNIT;
  }

  /** A slot of `size` bytes with one holder (the caller), or null when no free extent is large enough. */
  alloc(size: number): SlabSlot | null {
    const units = Math.max(1, Math.ceil(size / UNIT));
    for (let i = 0; i < this.freeList.length; i++) {
      const f = this.freeList[i]!;
      if (f.units < units) continue;
      const at = f.at;
      if (f.units === units) this.freeList.splice(i, 1);
      else {
        f.at += units;
        f.units -= units;
      }
      this.usedUnits += units;
      this.slots++;
      this.holds++;
      return new SlabSlot(this, at * UNIT, size, units);
    }
    return null;
  }

  /** Called by the slot's last holder only. */
  free(atBytes: number, units: number): void {
    const at = atBytes / UNIT;
    this.usedUnits -= units;
    this.slots--;
    const list = this.freeList;
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]!.at < at) lo = mid + 1;
      else hi = mid;
    }
    const prev = list[lo - 1];
    const next = list[lo];
    if ((prev && prev.at + prev.units > at) || (next && at + units > next.at)) throw new VmdnError('E_INTERNAL', 'slab extent freed twice');
    if (prev && prev.at + prev.units === at) {
      prev.units += units;
      if (next && prev.at + prev.units === next.at) {
        prev.units += next.units;
        list.splice(lo, 1);
      }
    } else if (next && at + units === next.at) {
      next.at = at;
      next.units += units;
    } else list.splice(lo, 0, { at, units });
  }
}
