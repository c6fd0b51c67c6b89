/** Fast all-zero tests: Buffer.compare against a shared zero page runs as native memcmp. */
export const PAGE = 4096;
export const ZERO_PAGE = new Uint8Array(PAGE);
const ZERO_BIG = Buffer.alloc(1 << 20);

export function isZero(b: Uint8Array): boolean {
  for (let off = 0; off < b.length; off += ZERO_BIG.length) {
    const n = Math.min(ZERO_BIG.length, b.length - off);
    if (Buffer.compare(b.subarray(off, off + n), ZERO_BIG.subarray(0, n)) !== 0) return false;
  }
  return true;
}

export interface Run {
  start: number;
  length: number;
  zero: boolean;
}

/** Split a buffer into alternating runs of all-zero and non-zero 4 KiB pages (last page may be short). */
export function* zeroRuns(b: Uint8Array): Generator<Run> {
  let runStart = 0;
  let runZero: boolean | null = null;
  for (let p = 0; p < b.length; p += PAGE) {
    const n = Math.min(PAGE, b.length - p);
    const z = Buffer.compare(b.subarray(p, p + n), ZERO_PAGE.subarray(0, n)) === 0;
    if (runZero === null) runZero = z;
    else if (z !== runZero) {
      yield { start: runStart, length: p - runStart, zero: runZero };
      runStart = p;
      runZero = z;
    }
  }
  if (runZero !== null) yield { start: runStart, length: b.length - runStart, zero: runZero };
}
