/** In-memory tar archives for the OVA parser tests. */
import type { ReadAt } from '../../src/container/ova/tar.js';
import { tarEnd, tarHeader, tarPadding } from '../../src/container/ova/tar-write.js';

export function tarOf(members: Array<[string, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [n, d] of members) parts.push(tarHeader(n, d.length, 0), d, tarPadding(d.length));
  return Buffer.concat([...parts, tarEnd()]);
}

export const reader = (b: Buffer): ReadAt => async (p, l) => b.subarray(p, Math.min(b.length, p + l));
