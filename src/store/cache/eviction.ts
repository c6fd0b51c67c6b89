/**
 * Eviction policies for the edge cache, over a byte budget. Objects vary in
 * size (a few KiB to a few hundred), so every policy accounts bytes, not
 * entries. LRU is the baseline; W-TinyLFU (Einziger et al., "TinyLFU: A
 * Highly Efficient Cache Admission Policy") adds a frequency sketch so that
 * one-off scans, e.g. a single client pulling a rare image, cannot flush
 * objects that many clients keep asking for.
 */

export interface EvictionPolicy {
  readonly name: string;
  readonly capacity: number;
  /** Bytes currently admitted. */
  readonly bytes: number;
  readonly size: number;
  has(key: string): boolean;
  /** A cache hit on a resident key. */
  touch(key: string): void;
  /** A new key of `size` bytes; returns the keys to evict now (it may be `key` itself: not admitted). */
  insert(key: string, size: number): string[];
  /** The key left the cache for another reason (deleted, found corrupt). */
  remove(key: string): void;
}

export const POLICIES = ['lru', 'wtinylfu'] as const;
export type PolicyName = (typeof POLICIES)[number];

export function createPolicy(name: PolicyName, capacity: number): EvictionPolicy {
  return name === 'lru' ? new LruPolicy(capacity) : new WTinyLfuPolicy(capacity);
}

/** Insertion-ordered Map as an LRU list: first key = least recently used. */
class LruList {
  readonly map = new Map<string, number>();
  bytes = 0;
  add(key: string, size: number): void {
    this.map.set(key, size);
    this.bytes += size;
  }
  delete(key: string): number | undefined {
    const s = this.map.get(key);
    if (s === undefined) return undefined;
    this.map.delete(key);
    this.bytes -= s;
    return s;
  }
  bump(key: string): void {
    const s = this.map.get(key)!;
    this.map.delete(key);
    this.map.set(key, s);
  }
  oldest(): [string, number] | undefined {
    for (const e of this.map) return e;
    return undefined;
  }
}

export class LruPolicy implements EvictionPolicy {
  readonly name = 'lru';
  private readonly list = new LruList();
  constructor(readonly capacity: number) {}
  get bytes(): number {
    return this.list.bytes;
  }
  get size(): number {
    return this.list.map.size;
  }
  has(key: string): boolean {
    return this.list.map.has(key);
  }
  touch(key: string): void {
    if (this.list.map.has(key)) this.list.bump(key);
  }
  insert(key: string, size: number): string[] {
    if (this.list.map.has(key)) return [];
    this.list.add(key, size);
    const out: string[] = [];
    while (this.list.bytes > this.capacity) {
      const [k] = this.list.oldest()!;
      this.list.delete(k);
      out.push(k);
    }
    return out;
  }
  remove(key: string): void {
    this.list.delete(key);
  }
}

/**
 * Count-min sketch with 4-bit-style saturating counters (max 15) and aging:
 * after `sampleSize` increments every counter is halved, so popularity fades.
 */
export class FrequencySketch {
  private readonly table: Uint8Array;
  private readonly mask: number;
  private additions = 0;
  private readonly sampleSize: number;

  constructor(expectedEntries: number) {
    let width = 64;
    while (width < expectedEntries) width *= 2;
    this.table = new Uint8Array(width * 4);
    this.mask = width - 1;
    this.sampleSize = 10 * width;
  }

  private indexes(key: string): number[] {
    // keys are hex digests, already uniformly distributed; for other keys mix a 32-bit FNV-1a
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    const out: number[] = [];
    for (let row = 0; row < 4; row++) {
      h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) ^ row;
      h = Math.imul(h ^ (h >>> 12), 0x297a2d39);
      out.push(row * (this.mask + 1) + ((h ^ (h >>> 15)) & this.mask));
    }
    return out;
  }

  increment(key: string): void {
    let added = false;
    for (const i of this.indexes(key)) {
      if (this.table[i]! < 15) {
        this.table[i]!++;
        added = true;
      }
    }
    if (added && ++this.additions >= this.sampleSize) {
      for (let i = 0; i < this.table.length; i++) this.table[i]! >>= 1;
      this.additions >>= 1;
    }
  }

  frequency(key: string): number {
    let f = 15;
    for (const i of this.indexes(key)) f = Math.min(f, this.table[i]!);
    return f;
  }
}

/**
 * W-TinyLFU: a small LRU window (1% of bytes) absorbs bursts; objects leaving
 * it compete with the main space's LRU victims and enter only if the sketch
 * says they are asked for more often. The main space is a segmented LRU
 * (80% protected for objects hit twice, 20% probation).
 */
export class WTinyLfuPolicy implements EvictionPolicy {
  readonly name = 'wtinylfu';
  private readonly window = new LruList();
  private readonly probation = new LruList();
  private readonly protected_ = new LruList();
  private readonly sketch: FrequencySketch;
  private readonly windowCap: number;
  private readonly mainCap: number;
  private readonly protectedCap: number;

  constructor(readonly capacity: number, avgObjectSize = 64 * 1024) {
    this.windowCap = Math.max(1, Math.floor(capacity * 0.01));
    this.mainCap = capacity - this.windowCap;
    this.protectedCap = Math.floor(this.mainCap * 0.8);
    this.sketch = new FrequencySketch(Math.max(64, Math.ceil(capacity / avgObjectSize)));
  }

  get bytes(): number {
    return this.window.bytes + this.probation.bytes + this.protected_.bytes;
  }
  get size(): number {
    return this.window.map.size + this.probation.map.size + this.protected_.map.size;
  }
  has(key: string): boolean {
    return this.window.map.has(key) || this.probation.map.has(key) || this.protected_.map.has(key);
  }

  touch(key: string): void {
    this.sketch.increment(key);
    if (this.window.map.has(key)) return this.window.bump(key);
    if (this.protected_.map.has(key)) return this.protected_.bump(key);
    const s = this.probation.delete(key);
    if (s === undefined) return;
    this.protected_.add(key, s);
    // protected overflow demotes its LRU back to probation: still cached, just less safe
    while (this.protected_.bytes > this.protectedCap) {
      const [k, ks] = this.protected_.oldest()!;
      this.protected_.delete(k);
      this.probation.add(k, ks);
    }
  }

  insert(key: string, size: number): string[] {
    this.sketch.increment(key);
    if (this.has(key)) return [];
    this.window.add(key, size);
    const out: string[] = [];
    while (this.window.bytes > this.windowCap) {
      const [cand, cs] = this.window.oldest()!;
      this.window.delete(cand);
      this.admit(cand, cs, out);
    }
    return out;
  }

  /** The window's victim enters main only by beating main's victims on frequency. */
  private admit(cand: string, size: number, out: string[]): void {
    if (size > this.mainCap) {
      out.push(cand);
      return;
    }
    const candFreq = this.sketch.frequency(cand);
    const need = this.probation.bytes + this.protected_.bytes + size - this.mainCap;
    if (need > 0) {
      // look before evicting: the candidate must beat every victim it would displace
      const victims: Array<[string, LruList]> = [];
      let freed = 0;
      outer: for (const list of [this.probation, this.protected_]) {
        for (const [k, s] of list.map) {
          if (freed >= need) break outer;
          if (candFreq <= this.sketch.frequency(k)) {
            out.push(cand);
            return;
          }
          victims.push([k, list]);
          freed += s;
        }
      }
      for (const [k, list] of victims) {
        list.delete(k);
        out.push(k);
      }
    }
    this.probation.add(cand, size);
  }

  remove(key: string): void {
    this.window.delete(key) ?? this.probation.delete(key) ?? this.protected_.delete(key);
  }
}
