/** Seeded randomness for fuzz and kill tests: a run prints its seed, an env var replays it. */

/** mulberry32: small, seedable, good enough to pick mutations. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The seed from `envVar`, else a fresh random one. */
export function seedFrom(envVar: string): number {
  return Number(process.env[envVar] ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
}
