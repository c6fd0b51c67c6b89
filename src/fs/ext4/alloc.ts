/**
 * Allocate data blocks for regular files that `mke2fs -d` made from sparse
 * stand-ins (size set, no blocks), so the files strategy can write their
 * content straight into the image instead of through mke2fs. For each file:
 * free runs from its flex group on (ext4-alloc-space), an extent tree (in
 * i_block up to 4 extents, else index/leaf blocks with their checksum
 * tails), i_blocks, the inode checksum; then bitmaps, descriptors and the
 * superblock are written back. Blocks handed out read as zero afterwards
 * (any that hold bytes in the image file are zeroed), so content writers
 * may skip all-zero blocks. Only the ranges a file has content for get
 * blocks: the rest stays a hole, reading as zeros like the tree says.
 */
import fs from 'node:fs';
import { VmdnError } from '../../errors.js';
import * as L from './layout.js';
import { crc32cRaw, crc32cU32 } from './crc32c.js';
import { writeInodeChecksum } from './inode.js';
import { dataRanges } from '../../container/sparse.js';
import { allocError, FreeSpace, openFsFile } from './alloc-space.js';
import type { FsImage } from './image.js';

export interface AllocRequest {
  ino: number;
  /** The inode's i_size, as mke2fs set it (checked). */
  size: number;
  /** Logical block ranges [start, end) that need blocks: ascending, disjoint, within the size. */
  ranges: Array<[number, number]>;
}

/** A physically contiguous piece of a file: `length` blocks from logical block `logical` at `physical`. */
export interface PhysRun {
  logical: number;
  physical: number;
  length: number;
}

export interface FileMap {
  ino: number;
  runs: PhysRun[];
}

const INIT_MAX_LEN = 32768;
const ROOT_MAX = 4;

/** Allocate blocks for every request in the filesystem `img`; returns each file's runs, in request order. */
export async function allocateFiles(img: FsImage, reqs: AllocRequest[]): Promise<FileMap[]> {
  const fd = fs.openSync(img.file, 'r+');
  try {
    const file = openFsFile(img, fd);
    const space = new FreeSpace(file);
    const sb = space.sb;
    const bs = sb.blockSize;
    const out: FileMap[] = [];
    const seen = new Set<number>();
    for (const req of reqs) {
      if (seen.has(req.ino)) allocError(`inode ${req.ino} requested twice`);
      seen.add(req.ino);
      const at = space.inodeOffset(req.ino);
      const raw = file.read(at, sb.inodeSize);
      const xattrSectors = checkInode(raw, req, bs, (sb.incompat & L.INCOMPAT_64BIT) !== 0);
      let goal = space.goalFor(req.ino);
      const runs: PhysRun[] = [];
      for (const [s, e] of req.ranges) {
        let logical = s;
        for (const [p, n] of space.take(goal, e - s)) {
          const last = runs[runs.length - 1];
          if (last && last.logical + last.length === logical && last.physical + last.length === p) last.length += n;
          else runs.push({ logical, physical: p, length: n });
          logical += n;
          goal = p + n;
        }
      }
      const extents: PhysRun[] = [];
      for (const r of runs) {
        for (let k = 0; k < r.length; k += INIT_MAX_LEN) extents.push({ logical: r.logical + k, physical: r.physical + k, length: Math.min(INIT_MAX_LEN, r.length - k) });
      }
      const cap = Math.floor((bs - 12) / 12);
      let nTree = 0;
      for (let n = extents.length; n > ROOT_MAX; n = Math.ceil(n / cap)) nTree += Math.ceil(n / cap);
      const treeBlocks: number[] = [];
      if (nTree) for (const [p, n] of space.take(goal, nTree)) for (let k = 0; k < n; k++) treeBlocks.push(p + k);
      const seed = sb.csumSeed === undefined ? undefined : crc32cU32(crc32cU32(sb.csumSeed, req.ino), raw.readUInt32LE(0x64));
      const root = buildTree(extents, treeBlocks, bs, cap, seed, (b, buf) => file.write(buf, b * bs));
      raw.set(root, 0x28);
      const dataBlocks = runs.reduce((n, r) => n + r.length, 0);
      const sectors = (dataBlocks + nTree) * (bs / 512) + xattrSectors;
      if (sectors >= 2 ** 32) {
        if (!(sb.roCompat & L.RO_COMPAT_HUGE_FILE) || sectors >= 2 ** 48) throw new VmdnError('E_UNSUPPORTED', `ext4 allocator: inode ${req.ino} needs ${sectors} sectors`);
        raw.writeUInt16LE(Math.floor(sectors / 2 ** 32), 0x74);
      }
      raw.writeUInt32LE(sectors % 2 ** 32, 0x1c);
      raw.writeUInt32LE((raw.readUInt32LE(0x20) | L.INODE_EXTENTS_FL) >>> 0, 0x20);
      if (sb.csumSeed !== undefined) writeInodeChecksum(raw, sb.csumSeed, req.ino);
      file.write(raw, at);
      out.push({ ino: req.ino, runs });
    }
    space.flush();
    zeroAllocated(fd, img, bs, out);
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The inode must be what mke2fs makes of a sparse stand-in: a regular file of
 * this size, extents, no blocks but an xattr block if it has one. Returns the
 * sectors i_blocks already counts (that xattr block).
 */
function checkInode(raw: Buffer, req: AllocRequest, bs: number, is64: boolean): number {
  const bad = (msg: string): never => allocError(`inode ${req.ino}: ${msg}`);
  if (raw.readUInt16LE(0) >>> 12 !== 0x8) bad('not a regular file');
  const flags = raw.readUInt32LE(0x20);
  if (!(flags & L.INODE_EXTENTS_FL) || flags & L.INODE_INLINE_DATA_FL) bad(`flags 0x${flags.toString(16)} are not a plain extent-mapped file`);
  if (raw.readUInt16LE(0x28) !== L.EXTENT_MAGIC || raw.readUInt16LE(0x2a) !== 0 || raw.readUInt16LE(0x2e) !== 0) bad('extent root is not empty');
  const xattrBlock = raw.readUInt32LE(0x68) + (is64 ? raw.readUInt16LE(0x76) * 2 ** 32 : 0);
  const xattrSectors = xattrBlock ? bs / 512 : 0;
  if (flags & L.INODE_HUGE_FILE_FL || raw.readUInt32LE(0x1c) !== xattrSectors || raw.readUInt16LE(0x74) !== 0) bad('already has blocks');
  const size = raw.readUInt32LE(0x4) + raw.readUInt32LE(0x6c) * 2 ** 32;
  if (size !== req.size) bad(`size ${size}, expected ${req.size}`);
  const end = Math.ceil(size / bs);
  if (end > 2 ** 32) bad('too large for extents');
  let prev = 0;
  for (const [s, e] of req.ranges) {
    if (!Number.isSafeInteger(s) || !Number.isSafeInteger(e) || s < prev || e <= s || e > end) bad(`block range ${s}-${e} out of order or past the end`);
    prev = e;
  }
  return xattrSectors;
}

function header(b: Buffer, at: number, entries: number, max: number, depth: number): void {
  b.writeUInt16LE(L.EXTENT_MAGIC, at);
  b.writeUInt16LE(entries, at + 2);
  b.writeUInt16LE(max, at + 4);
  b.writeUInt16LE(depth, at + 6);
  b.writeUInt32LE(0, at + 8);
}

interface Entry {
  logical: number;
  put(b: Buffer, at: number): void;
}

/** Lay out the extent tree (full nodes, fewest levels); writes its blocks through `write`, returns i_block. */
function buildTree(extents: PhysRun[], blocks: number[], bs: number, cap: number, seed: number | undefined, write: (block: number, buf: Buffer) => void): Buffer {
  let items: Entry[] = extents.map((x) => ({
    logical: x.logical,
    put: (b, at) => {
      b.writeUInt32LE(x.logical, at);
      b.writeUInt16LE(x.length, at + 4);
      b.writeUInt16LE(Math.floor(x.physical / 2 ** 32), at + 6);
      b.writeUInt32LE(x.physical % 2 ** 32, at + 8);
    },
  }));
  let depth = 0;
  let used = 0;
  while (items.length > ROOT_MAX) {
    const next: Entry[] = [];
    for (let i = 0; i < items.length; i += cap) {
      const part = items.slice(i, i + cap);
      const blk = blocks[used++];
      if (blk === undefined) throw new VmdnError('E_INTERNAL', 'extent tree needs more blocks than counted');
      const buf = Buffer.alloc(bs);
      header(buf, 0, part.length, cap, depth);
      part.forEach((it, k) => it.put(buf, 12 + 12 * k));
      if (seed !== undefined) buf.writeUInt32LE(crc32cRaw(seed, buf, 0, 12 + 12 * cap), 12 + 12 * cap);
      write(blk, buf);
      const first = part[0]!.logical;
      next.push({
        logical: first,
        put: (b, at) => {
          b.writeUInt32LE(first, at);
          b.writeUInt32LE(blk % 2 ** 32, at + 4);
          b.writeUInt16LE(Math.floor(blk / 2 ** 32), at + 8);
          b.writeUInt16LE(0, at + 10);
        },
      });
    }
    items = next;
    depth++;
  }
  if (used !== blocks.length) throw new VmdnError('E_INTERNAL', 'extent tree used fewer blocks than counted');
  const root = Buffer.alloc(60);
  header(root, 0, items.length, ROOT_MAX, depth);
  items.forEach((it, k) => it.put(root, 12 + 12 * k));
  return root;
}

/** Zero every allocated data block that is not a hole in the image file (a fresh image has none). */
function zeroAllocated(fd: number, img: FsImage, bs: number, maps: FileMap[]): void {
  const runs = maps.flatMap((m) => m.runs.map((r) => [img.offset + r.physical * bs, img.offset + (r.physical + r.length) * bs] as const)).sort((a, b) => a[0] - b[0]);
  if (!runs.length) return;
  const zeros = Buffer.alloc(1 << 20);
  let k = 0;
  for (const [ds, de] of dataRanges(fd, fs.fstatSync(fd).size)) {
    if (de <= img.offset) continue;
    if (ds >= img.offset + img.length) break;
    while (k < runs.length && runs[k]![1] <= ds) k++;
    for (let j = k; j < runs.length && runs[j]![0] < de; j++) {
      for (let s = Math.max(ds, runs[j]![0]), e = Math.min(de, runs[j]![1]); s < e; s += zeros.length) fs.writeSync(fd, zeros, 0, Math.min(zeros.length, e - s), s);
    }
  }
}
