/**
 * Seeded mutations of a valid input, for the parser fuzz targets: bytes
 * overwritten, tokens that matter to the format inserted, slices deleted,
 * repeated or cut off. 1-4 mutations a case; the same seed gives the same cases.
 */
export type Rng = () => number;
export const int = (r: Rng, n: number): number => Math.floor(r() * n);
export const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)]!;

/** Tokens that break line- and field-oriented text formats in interesting ways. */
export const TEXT_TOKENS = ['\n', '\n\n', ' ', '\t', '\r', ':', ': ', '#', '\0', '\ufeff', '\u00e9', '-1', '0', '99999999999999999999', '1e309', 'NaN', '../', '/', '..', '%00',
  'x'.repeat(70_000), '\n '.repeat(2000), 'a: b\n'.repeat(500)];

export function mutateBytes(r: Rng, base: Uint8Array, tokens: readonly string[] = TEXT_TOKENS): Buffer {
  let b = Buffer.from(base);
  for (let k = 0, n = 1 + int(r, 4); k < n; k++) {
    const at = int(r, b.length + 1);
    const how = int(r, 6);
    if (how === 0 && b.length) b[Math.min(at, b.length - 1)] = int(r, 256);
    else if (how === 1 || how === 2) b = Buffer.concat([b.subarray(0, at), Buffer.from(pick(r, tokens)), b.subarray(at)]);
    else if (how === 3) b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + int(r, 64)))]);
    else if (how === 4) {
      const len = 1 + int(r, 200);
      b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)]);
    } else b = b.subarray(0, at);
  }
  return b;
}
