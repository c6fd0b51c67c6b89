/**
 * Chunkers: decide where one chunk ends and the next begins.
 *
 * Chunk boundaries define the store (every boundary change re-keys every
 * chunk), so the CDC algorithm and its gear table are frozen: the golden
 * vectors in test/vectors/chunker.json fail loudly if either drifts.
 */
import { VmdnError } from '../errors.js';
import { parseSize } from '../util/size.js';
import { MAX_CHUNK } from '../model/chunk.js';

export interface ChunkerParams {
  kind: 'fixed' | 'cdc';
  /** For 'fixed', min = avg = max = the chunk size. */
  min: number;
  avg: number;
  max: number;
}

export interface Chunker {
  readonly params: ChunkerParams;
  /**
   * Given a buffer that starts at a chunk boundary, return the length of the next chunk.
   * `final` = no more data follows this buffer (so the remainder is the last chunk).
   * If !final and no boundary is found before buf.length (and buf.length < max), return 0
   * meaning "need more data". The result depends only on buf[0, max), never on later bytes.
   */
  next(buf: Uint8Array, final: boolean): number;
}

export const MIN_CHUNK = 64;
export { MAX_CHUNK };
export const DEFAULT_CDC: Readonly<ChunkerParams> = Object.freeze({ kind: 'cdc', min: 16 << 10, avg: 64 << 10, max: 256 << 10 });
export const DEFAULT_FIXED: Readonly<ChunkerParams> = Object.freeze({ kind: 'fixed', min: 64 << 10, avg: 64 << 10, max: 64 << 10 });

/**
 * Gear table: 256 pseudo-random 32-bit words from mulberry32 seeded with
 * 0x766d646e ("vmdn"), taken in order. NEVER change the seed or generator:
 * that would move every CDC boundary and orphan every stored chunk.
 */
const GEAR: Int32Array = (() => {
  // Stored as Int32Array (same bits as the uint32 words) so loads stay small integers in V8.
  const g = new Int32Array(256);
  let s = 0x766d646e;
  for (let i = 0; i < 256; i++) {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    g[i] = t ^ (t >>> 14);
  }
  return g;
})();

/**
 * Bit k of the rolling hash depends on the last k+1 bytes only, so the high
 * bits see the widest window (32 bytes). Masks therefore take the top bits.
 */
function topMask(bits: number): number {
  return bits <= 0 ? 0 : (((1 << bits) - 1) << (32 - bits)) | 0;
}

/** Hash window: after WINDOW shifts a byte has left the 32-bit hash entirely. */
const WINDOW = 32;

/** Word-at-a-time reads need the bytes of a word in little-endian order. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

class FastCdc implements Chunker {
  readonly params: ChunkerParams;
  private readonly maskS: number;
  private readonly maskL: number;
  /** Rolling hash carried between scan calls within one next(). */
  private h = 0;

  constructor(p: ChunkerParams) {
    this.params = Object.freeze({ ...p });
    // Normalized chunking, level 1 (FastCDC §3.3): a harder mask (bits+1) before
    // avg and an easier one (bits-1) after it pulls sizes towards avg.
    const bits = Math.round(Math.log2(p.avg));
    this.maskS = topMask(bits + 1);
    this.maskL = topMask(bits - 1);
  }

  next(buf: Uint8Array, final: boolean): number {
    const n = buf.length;
    const { min, avg, max } = this.params;
    // No cut at or before min: chunks exceed min bytes unless cut at max (= min) or last.
    if (n <= min) return final ? n : 0;
    const end = n < max ? n : max;
    const normal = avg < end ? avg : end;
    // Warm the hash over the WINDOW bytes before min (FastCDC skips the first min
    // bytes entirely; we skip all but these). Then the hash at any position is a
    // function of the last 32 bytes alone, independent of where the chunk started,
    // so boundaries are purely local to content and resynchronise quickly.
    let h = 0;
    for (let i = min - WINDOW; i < min; i++) h = ((h << 1) + GEAR[buf[i]]) | 0;
    this.h = h;
    let r = this.scan(buf, min, normal, this.maskS);
    if (r < 0) r = this.scan(buf, normal, end, this.maskL);
    if (r > 0) return r;
    if (end === max) return max;
    return final ? n : 0;
  }

  /** Roll bytes [i, to) into this.h; return the chunk length at the first hash with no mask bit set, or -1. */
  private scanBytes(buf: Uint8Array, i: number, to: number, mask: number): number {
    const G = GEAR;
    let h = this.h;
    for (; i < to; i++) {
      h = ((h << 1) + G[buf[i]]) | 0;
      if ((h & mask) === 0) return i + 1;
    }
    this.h = h;
    return -1;
  }

  /**
   * Same as scanBytes, but reads aligned 32-bit words: one typed-array load per
   * four bytes roughly doubles throughput in V8 (bounds checks dominate).
   */
  private scan(buf: Uint8Array, i: number, to: number, mask: number): number {
    if (!LITTLE_ENDIAN || to - i < 16) return this.scanBytes(buf, i, to, mask);
    const head = (4 - ((buf.byteOffset + i) & 3)) & 3;
    const r = this.scanBytes(buf, i, i + head, mask);
    if (r >= 0) return r;
    i += head;
    const nw = (to - i) >>> 2;
    const words = new Int32Array(buf.buffer, buf.byteOffset + i, nw);
    const G = GEAR;
    let h = this.h;
    for (let j = 0; j < nw; j++) {
      const x = words[j];
      h = ((h << 1) + G[x & 255]) | 0;
      if ((h & mask) === 0) return i + 4 * j + 1;
      h = ((h << 1) + G[(x >>> 8) & 255]) | 0;
      if ((h & mask) === 0) return i + 4 * j + 2;
      h = ((h << 1) + G[(x >>> 16) & 255]) | 0;
      if ((h & mask) === 0) return i + 4 * j + 3;
      h = ((h << 1) + G[x >>> 24]) | 0;
      if ((h & mask) === 0) return i + 4 * j + 4;
    }
    this.h = h;
    return this.scanBytes(buf, i + 4 * nw, to, mask);
  }
}

class FixedChunker implements Chunker {
  readonly params: ChunkerParams;
  constructor(p: ChunkerParams) {
    this.params = Object.freeze({ ...p });
  }
  next(buf: Uint8Array, final: boolean): number {
    const size = this.params.max;
    if (buf.length >= size) return size;
    return final ? buf.length : 0;
  }
}

function usage(message: string, data: Record<string, unknown> = {}): VmdnError {
  return new VmdnError('E_USAGE', message, data);
}

/** Throws E_USAGE unless the params are acceptable; params may come from users or manifests. */
export function validateChunkerParams(p: ChunkerParams): void {
  const { kind, min, avg, max } = p;
  for (const [k, v] of Object.entries({ min, avg, max })) {
    if (!Number.isSafeInteger(v)) throw usage(`chunker ${k} must be an integer`, { [k]: v });
  }
  if (kind === 'fixed') {
    if (min !== avg || avg !== max) throw usage('fixed chunker needs min = avg = max', { min, avg, max });
    if (max < MIN_CHUNK || max > MAX_CHUNK) {
      throw usage(`fixed chunk size must be between ${MIN_CHUNK} and ${MAX_CHUNK}`, { size: max });
    }
    return;
  }
  if (kind !== 'cdc') throw usage(`unknown chunker kind '${String(kind)}' (expected fixed or cdc)`);
  if (min < MIN_CHUNK) throw usage(`cdc min must be >= ${MIN_CHUNK}`, { min });
  if (!(min <= avg && avg <= max)) throw usage('cdc sizes must satisfy min <= avg <= max', { min, avg, max });
  if (max > MAX_CHUNK) throw usage(`cdc max must be <= ${MAX_CHUNK}`, { max });
  if ((avg & (avg - 1)) !== 0) throw usage('cdc avg must be a power of two', { avg });
}

export function createChunker(p: ChunkerParams): Chunker {
  validateChunkerParams(p);
  return p.kind === 'fixed' ? new FixedChunker(p) : new FastCdc(p);
}


function formatSize(n: number): string {
  if (n % (1 << 20) === 0) return `${n / (1 << 20)}m`;
  if (n % 1024 === 0) return `${n / 1024}k`;
  return String(n);
}

/**
 * "fixed" | "fixed:SIZE" | "cdc" | "cdc:AVG" (min=avg/4, max=avg*4) | "cdc:MIN:AVG:MAX".
 * Bare kinds use the defaults (cdc 16k:64k:256k as in casync; fixed 64k).
 */
export function parseChunkerSpec(spec: string): ChunkerParams {
  const parts = spec.trim().split(':');
  const kind = parts[0].toLowerCase();
  const sizes = parts.slice(1).map(parseSize);
  let p: ChunkerParams;
  if (kind === 'fixed') {
    if (sizes.length > 1) throw usage(`invalid chunker spec '${spec}' (expected fixed or fixed:SIZE)`);
    const size = sizes.length ? sizes[0] : DEFAULT_FIXED.max;
    p = { kind: 'fixed', min: size, avg: size, max: size };
  } else if (kind === 'cdc') {
    if (sizes.length === 0) p = { ...DEFAULT_CDC };
    else if (sizes.length === 1) p = { kind: 'cdc', min: sizes[0] / 4, avg: sizes[0], max: sizes[0] * 4 };
    else if (sizes.length === 3) p = { kind: 'cdc', min: sizes[0], avg: sizes[1], max: sizes[2] };
    else throw usage(`invalid chunker spec '${spec}' (expected cdc, cdc:AVG or cdc:MIN:AVG:MAX)`);
  } else {
    throw usage(`unknown chunker '${parts[0]}' in spec '${spec}' (expected fixed or cdc)`);
  }
  validateChunkerParams(p);
  return p;
}

/** Inverse of parseChunkerSpec: parseChunkerSpec(formatChunkerSpec(p)) deep-equals p. */
export function formatChunkerSpec(p: ChunkerParams): string {
  if (p.kind === 'fixed') return `fixed:${formatSize(p.max)}`;
  return `cdc:${formatSize(p.min)}:${formatSize(p.avg)}:${formatSize(p.max)}`;
}

/** next() where a cut is guaranteed; a chunker answering 0 here would loop forever. */
function cut(chunker: Chunker, buf: Uint8Array, final: boolean): number {
  const len = chunker.next(buf, final);
  if (!(len > 0 && len <= buf.length)) throw new VmdnError('E_INTERNAL', `chunker returned ${len} for ${buf.length} bytes`);
  return len;
}

/**
 * Split a contiguous stream into chunks. Boundaries are identical however the
 * input is split into buffers, because `next` is only asked about a buffer with
 * at least `max` bytes (its answer then depends on those max bytes alone) or at
 * end of stream. Chunks lying wholly inside an input buffer are yielded as
 * subarrays of it (no copy); only chunks straddling input buffers are copied.
 * So a source that recycles its buffers must not overwrite one while the
 * consumer still holds chunks from it.
 */
export async function* chunkStream(source: AsyncIterable<Uint8Array>, chunker: Chunker): AsyncIterable<Uint8Array> {
  const max = chunker.params.max;
  // Holds pending bytes that could not yet be cut; never more than max.
  const carry = new Uint8Array(max);
  let carryLen = 0;
  for await (const buf of source) {
    let pos = 0;
    while (carryLen > 0 && pos < buf.length) {
      const take = Math.min(max - carryLen, buf.length - pos);
      carry.set(buf.subarray(pos, pos + take), carryLen);
      carryLen += take;
      pos += take;
      if (carryLen < max) break; // buf exhausted; wait for more
      const len = cut(chunker, carry, false);
      yield carry.slice(0, len);
      const rest = max - len;
      if (rest <= take) {
        // The leftover all came from buf: resume reading it in place.
        pos -= rest;
        carryLen = 0;
      } else {
        carry.copyWithin(0, len, max);
        carryLen = rest;
      }
    }
    if (carryLen > 0) continue;
    while (buf.length - pos >= max) {
      const len = cut(chunker, buf.subarray(pos), false);
      yield buf.subarray(pos, pos + len);
      pos += len;
    }
    if (pos < buf.length) {
      carry.set(buf.subarray(pos));
      carryLen = buf.length - pos;
    }
  }
  let start = 0;
  while (start < carryLen) {
    // The carry is not reused after this, so no copy is needed.
    const len = cut(chunker, carry.subarray(start, carryLen), true);
    yield carry.subarray(start, start + len);
    start += len;
  }
}
