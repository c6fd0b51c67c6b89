/**
 * A copyRuns batch as flat data for its trip to a worker (the copyTable op):
 * the files it reads, every digest in one hex string, and five numbers per
 * object in one Float64Array. Measured on the corpus image, the structured
 * clone of ~110 item objects per message was most of an export's main-thread
 * time during the copy (postMessage, 0.7 ms a batch under load); this is a
 * string and a few KiB of numbers. The worker builds the items back (cheap:
 * plain objects made in place, not a clone decoded field by field).
 */
import type { RunItem } from './read-runs.js';
import { VmdnError } from '../../errors.js';

export interface RunTable {
  /** The pack or loose files read (a batch reads from one or two packs). */
  paths: string[];
  /** Every object's digest, 64 hex digits each, in order. */
  digests: string;
  /** Per object: index into `paths`, offset in that pack (-1: the whole file, a loose object), stored size, output offset, length. */
  table: Float64Array;
  /** Pairs (object's row, another output offset): where a repeated object's data goes again (decoded once). */
  copies?: Float64Array;
}

const FIELDS = 5;
const HEX = 64;

/** One object of a table under construction. */
export interface TableRow {
  digest: string;
  objPath: string;
  packOffset?: number;
  storedSize?: number;
  offset: number;
  length: number;
  /** Other output offsets of the same data (a repeated chunk). */
  copies?: number[];
}

export function packRunTable(rows: readonly TableRow[]): RunTable {
  const paths: string[] = [];
  const index = new Map<string, number>();
  const table = new Float64Array(rows.length * FIELDS);
  const digests: string[] = [];
  const copies: number[] = [];
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    let p = index.get(r.objPath);
    if (p === undefined) {
      p = paths.length;
      paths.push(r.objPath);
      index.set(r.objPath, p);
    }
    const at = i * FIELDS;
    table[at] = p;
    table[at + 1] = r.packOffset ?? -1;
    table[at + 2] = r.storedSize ?? 0;
    table[at + 3] = r.offset;
    table[at + 4] = r.length;
    digests.push(r.digest);
    for (const c of r.copies ?? []) copies.push(i, c);
  }
  return { paths, digests: digests.join(''), table, ...(copies.length ? { copies: Float64Array.from(copies) } : {}) };
}

/** The items of a table (worker side); a table that does not add up is an internal error. */
export function unpackRunTable(t: RunTable): RunItem[] {
  const n = t.table.length / FIELDS;
  if (!Number.isInteger(n) || t.digests.length !== n * HEX) throw new VmdnError('E_INTERNAL', `bad run table: ${t.table.length} numbers, ${t.digests.length} digest characters`);
  const items: RunItem[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const at = i * FIELDS;
    const objPath = t.paths[t.table[at]!];
    if (objPath === undefined) throw new VmdnError('E_INTERNAL', `bad run table: no path ${t.table[at]}`);
    const digest = t.digests.slice(i * HEX, (i + 1) * HEX);
    const packOffset = t.table[at + 1]!;
    items[i] = packOffset < 0
      ? { digest, objPath, offset: t.table[at + 3]!, length: t.table[at + 4]! }
      : { digest, objPath, packOffset, storedSize: t.table[at + 2]!, offset: t.table[at + 3]!, length: t.table[at + 4]! };
  }
  const c = t.copies ?? [];
  if (c.length % 2 !== 0) throw new VmdnError('E_INTERNAL', `bad run table: ${c.length} copy numbers`);
  for (let k = 0; k < c.length; k += 2) {
    const it = items[c[k]!];
    if (it === undefined) throw new VmdnError('E_INTERNAL', `bad run table: a copy of row ${c[k]}`);
    (it.copies ??= []).push(c[k + 1]!);
  }
  return items;
}
