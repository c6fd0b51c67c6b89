/**
 * Which peer owns an object (docs/p2p.md): rendezvous (highest random weight)
 * hashing of the digest. Every site with the same peer list asks the same
 * peer for an object, so when the peers are edges over the origin each object
 * leaves the origin once (through its owner edge) whatever the number of
 * sites, and removing a peer moves only the objects it owned.
 */
import { createHash } from 'node:crypto';
import type { Digest } from '../../store/digest.js';

/** A peer's fixed weight seed: the first 32 bits of the SHA-256 of its URL (the same on every site). */
export function peerSeed(url: string): number {
  return createHash('sha256').update(normalizePeerUrl(url)).digest().readUInt32BE(0);
}

export function normalizePeerUrl(url: string): string {
  return url.trim().replace(/\/+$/, '');
}

/** A digest's weight at a peer: a 32-bit mix (murmur3's finalizer) of the peer's seed and the digest's first 64 bits. */
export function weight(seed: number, digest: Digest): number {
  const h1 = parseInt(digest.slice(0, 8), 16);
  const h2 = parseInt(digest.slice(8, 16), 16);
  let x = Math.imul(h1 ^ seed, 0x9e3779b1) ^ h2;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Index of the peer (given by seeds) that owns `digest`: highest weight, ties to the lower seed. */
export function owner(seeds: readonly number[], digest: Digest): number {
  let best = -1;
  let bestW = -1;
  for (let i = 0; i < seeds.length; i++) {
    const w = weight(seeds[i]!, digest);
    if (w > bestW || (w === bestW && seeds[i]! < seeds[best]!)) {
      best = i;
      bestW = w;
    }
  }
  return best;
}
