/**
 * Sizes as people type and read them, one rule everywhere: binary units
 * (k = 1024), an optional "i"/"b" ("64k", "64KiB", "1.5G", "4096").
 */
import { VmdnError } from '../errors.js';

const UNIT: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** "10G", "512M", "1.5GiB", "64k", "4096" -> bytes; anything else is E_USAGE. */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(String(s).trim());
  const n = m ? Math.floor(Number(m[1]) * UNIT[m[2]!.toLowerCase()]!) : NaN;
  if (!Number.isSafeInteger(n)) throw new VmdnError('E_USAGE', `invalid size "${s}" (examples: 4096, 64k, 512M, 10G)`, { size: s });
  return n;
}

export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}
