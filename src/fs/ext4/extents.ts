/**
 * Logical -> physical block maps: extent trees (any depth, loops, depth and
 * bounds checked) and ext2/3 indirect blocks (single/double/triple).
 */
import * as L from './layout.js';
import { crc32cRaw } from './crc32c.js';
import { formatError, type Ext4Io } from './io.js';
import type { Inode } from './inode.js';

export interface Run {
  logical: number;
  physical: number;
  length: number;
  /** Uninitialized (preallocated) extent: reads as zeros. */
  uninit: boolean;
}

const MAX_DEPTH = 5;
const INIT_MAX_LEN = 32768;

/** Blocks mapped by the tree, in logical order, adjacent runs merged. */
export async function mapBlocks(io: Ext4Io, inode: Inode): Promise<Run[]> {
  if (inode.flags & L.INODE_INLINE_DATA_FL) return [];
  const runs = inode.flags & L.INODE_EXTENTS_FL ? await extentRuns(io, inode) : await indirectRuns(io, inode);
  return runs;
}

function pushRun(out: Run[], r: Run): void {
  const p = out[out.length - 1];
  if (p && p.uninit === r.uninit && p.logical + p.length === r.logical && p.physical + p.length === r.physical) p.length += r.length;
  else out.push(r);
}

async function extentRuns(io: Ext4Io, inode: Inode): Promise<Run[]> {
  const ino = inode.ino;
  const out: Run[] = [];
  const visited = new Set<number>();
  let nextLogical = 0; // leaves must come in ascending, non-overlapping logical order

  const node = async (buf: Uint8Array, where: string, depthWanted: number | undefined, lo: number, hi: number): Promise<void> => {
    const h = L.EXTENT_HEADER.parse(buf);
    if (h.magic !== L.EXTENT_MAGIC) throw formatError(ino, `${where}: bad extent header magic 0x${h.magic.toString(16)}`);
    const cap = Math.floor((buf.length - 12) / 12);
    if (h.max > cap || h.entries > h.max) throw formatError(ino, `${where}: extent header entries ${h.entries} / max ${h.max} exceed capacity ${cap}`);
    if (h.depth > MAX_DEPTH) throw formatError(ino, `${where}: extent tree depth ${h.depth} > ${MAX_DEPTH}`);
    if (depthWanted !== undefined && h.depth !== depthWanted) throw formatError(ino, `${where}: extent depth ${h.depth}, expected ${depthWanted}`);
    for (let i = 0; i < h.entries; i++) {
      const at = 12 + i * 12;
      if (h.depth === 0) {
        const e = L.EXTENT_LEAF.parse(buf, at);
        const uninit = e.len > INIT_MAX_LEN;
        const len = uninit ? e.len - INIT_MAX_LEN : e.len;
        const phys = e.startHi * 2 ** 32 + e.startLo;
        if (len === 0) throw formatError(ino, `${where}: zero-length extent at logical block ${e.block}`);
        if (e.block < nextLogical || e.block < lo || e.block + len > hi) throw formatError(ino, `${where}: extent at logical block ${e.block}+${len} overlaps or leaves its range [${Math.max(lo, nextLogical)}, ${hi})`);
        io.checkRange(phys, len, `inode ${ino} extent at logical block ${e.block}`);
        nextLogical = e.block + len;
        pushRun(out, { logical: e.block, physical: phys, length: len, uninit });
      } else {
        const x = L.EXTENT_INDEX.parse(buf, at);
        const child = x.leafHi * 2 ** 32 + x.leafLo;
        const childHi = i + 1 < h.entries ? L.EXTENT_INDEX.parse(buf, at + 12).block : hi;
        if (x.block < lo || childHi > hi || x.block > childHi) throw formatError(ino, `${where}: index at logical block ${x.block} out of order or range`);
        if (visited.has(child)) throw formatError(ino, `extent tree loop: block ${child} referenced twice`);
        visited.add(child);
        const cb = await io.metaBlock(child, `inode ${ino} extent block`);
        verifyTail(io, inode, cb, child);
        await node(cb, `extent block ${child}`, h.depth - 1, x.block, childHi);
      }
    }
  };
  await node(inode.block, 'extent root', undefined, 0, 2 ** 32);
  return out;
}

/** metadata_csum: a u32 after eh_max entries, over the header and all entry slots. */
function verifyTail(io: Ext4Io, inode: Inode, buf: Uint8Array, block: number): void {
  if (inode.csumSeed === undefined) return;
  const max = buf[4] | (buf[5] << 8);
  const at = 12 + 12 * max;
  if (at + 4 > buf.length) return; // header check reports this
  const stored = new DataView(buf.buffer, buf.byteOffset + at, 4).getUint32(0, true);
  const c = crc32cRaw(inode.csumSeed, buf, 0, at);
  if (c !== stored) io.warn(`ext4 inode ${inode.ino}: extent block ${block} checksum mismatch`);
}

/** ext2/3 block pointers: 12 direct, then single, double and triple indirect blocks. */
async function indirectRuns(io: Ext4Io, inode: Inode): Promise<Run[]> {
  const ino = inode.ino;
  const out: Run[] = [];
  const per = io.bs / 4;
  // Only map what the size covers: blocks past EOF are never read.
  const limit = Math.ceil(inode.size / io.bs);
  const seen = new Set<number>();
  const ptrs = new DataView(inode.block.buffer, inode.block.byteOffset, 60);
  const data = (logical: number, b: number): void => {
    if (b === 0 || logical >= limit) return;
    io.checkRange(b, 1, `inode ${ino} block ${logical}`);
    pushRun(out, { logical, physical: b, length: 1, uninit: false });
  };
  const walk = async (b: number, level: number, logical: number): Promise<void> => {
    if (b === 0 || logical >= limit) return;
    if (seen.has(b)) throw formatError(ino, `indirect block ${b} referenced twice`);
    seen.add(b);
    const buf = await io.readBlocks(b, 1, `inode ${ino} indirect block`);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
    const span = per ** (level - 1);
    for (let i = 0; i < per; i++) {
      const p = dv.getUint32(i * 4, true);
      const lg = logical + i * span;
      if (lg >= limit) break;
      if (level === 1) data(lg, p);
      else await walk(p, level - 1, lg);
    }
  };
  for (let i = 0; i < 12; i++) data(i, ptrs.getUint32(i * 4, true));
  await walk(ptrs.getUint32(48, true), 1, 12);
  await walk(ptrs.getUint32(52, true), 2, 12 + per);
  await walk(ptrs.getUint32(56, true), 3, 12 + per + per * per);
  return out;
}
