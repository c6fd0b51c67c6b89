/**
 * Free space of an ext4 image for the block allocator (ext4-alloc): the
 * superblock, the group descriptors and every block bitmap, read and
 * cross-checked (descriptor and bitmap checksums, each group's metadata
 * marked used, free counts matching the bitmaps and the superblock) before
 * anything is handed out, and written back with their checksums afterwards.
 * The image is one this process just made with mke2fs, but nothing read from
 * it is trusted: every location is bound-checked and any inconsistency is a
 * VmdnError, never a write out of range.
 */
import fs from 'node:fs';
import { VmdnError } from '../../errors.js';
import * as L from './layout.js';
import { crc32cRaw } from './crc32c.js';
import { descChecksum } from './groups.js';
import { baseMetaBlocks, descBlockLocation, descsPerBlock, groupFirstBlock, parseSuperblock, type Ext4Super } from './superblock.js';
import type { FsImage } from './image.js';

export const allocError = (msg: string): never => {
  throw new VmdnError('E_FORMAT', `ext4 allocator: ${msg}`);
};

/** Positioned I/O confined to the filesystem's byte range inside the image file. */
export class FsFile {
  constructor(
    readonly fd: number,
    readonly base: number,
    public limit: number,
  ) {}
  private check(off: number, len: number): void {
    if (!Number.isSafeInteger(off) || off < 0 || len < 0 || off + len > this.limit) allocError(`access ${off}+${len} outside the filesystem (${this.limit} bytes)`);
  }
  read(off: number, len: number): Buffer {
    this.check(off, len);
    const b = Buffer.alloc(len);
    for (let done = 0; done < len; ) {
      const n = fs.readSync(this.fd, b, done, len - done, this.base + off + done);
      if (n <= 0) allocError(`short read at ${off + done}`);
      done += n;
    }
    return b;
  }
  write(b: Uint8Array, off: number): void {
    this.check(off, b.length);
    for (let done = 0; done < b.length; ) {
      const n = fs.writeSync(this.fd, b, done, b.length - done, this.base + off + done);
      if (n <= 0) throw new VmdnError('E_IO', `short write at ${off + done}`);
      done += n;
    }
  }
}

interface Group {
  desc: Buffer;
  descBlock: number;
  bitmapBlock: number;
  inodeTable: number;
  bitmap: Buffer;
  free: number;
  nBlocks: number;
  dirty: boolean;
}

function setBits(b: Buffer, from: number, to: number): void {
  let i = from;
  for (; i < to && i & 7; i++) b[i >>> 3]! |= 1 << (i & 7);
  for (; i + 8 <= to; i += 8) b[i >>> 3] = 0xff;
  for (; i < to; i++) b[i >>> 3]! |= 1 << (i & 7);
}
const bit = (b: Buffer, i: number) => (b[i >>> 3]! >>> (i & 7)) & 1;

export class FreeSpace {
  readonly sb: Ext4Super;
  readonly inodeTableBlocks: number;
  private readonly raw: Buffer;
  private readonly gdt: Buffer[] = [];
  private readonly groups: Group[] = [];
  /** Free runs in block order (merged across group boundaries). */
  private starts: number[] = [];
  private lens: number[] = [];

  constructor(readonly file: FsFile) {
    this.raw = file.read(L.SUPERBLOCK_OFFSET, 1024);
    const sb = (this.sb = parseSuperblock(this.raw, file.limit, []));
    const bs = sb.blockSize;
    if (sb.clusterRatio !== 1) throw new VmdnError('E_UNSUPPORTED', 'ext4 allocator: bigalloc is not supported');
    if (!(sb.incompat & L.INCOMPAT_EXTENTS)) throw new VmdnError('E_UNSUPPORTED', 'ext4 allocator: the filesystem has no extents');
    if (sb.blocksPerGroup % 8) allocError(`blocks_per_group ${sb.blocksPerGroup} not a multiple of 8`);
    file.limit = sb.blocksCount * bs;
    this.inodeTableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeSize) / bs);
    const inFs = (b: number, n: number, what: string) => {
      if (!Number.isSafeInteger(b) || b < Math.max(1, sb.firstDataBlock) || b + n > sb.blocksCount) allocError(`${what} at block ${b}+${n} outside the filesystem`);
    };
    const dpb = descsPerBlock(sb);
    for (let i = 0; i < Math.ceil(sb.groupCount / dpb); i++) {
      const at = descBlockLocation(sb, i);
      inFs(at, 1, `group descriptor block ${i}`);
      this.gdt.push(file.read(at * bs, bs));
    }
    const csumGd = sb.csumSeed !== undefined || (sb.roCompat & L.RO_COMPAT_GDT_CSUM) !== 0;
    const meta: Array<Array<[number, number]>> = Array.from({ length: sb.groupCount }, () => []);
    const addMeta = (s: number, e: number) => {
      while (s < e) {
        const g = Math.floor((s - sb.firstDataBlock) / sb.blocksPerGroup);
        const ge = Math.min(groupFirstBlock(sb, g + 1), e);
        meta[g]!.push([s - groupFirstBlock(sb, g), ge - groupFirstBlock(sb, g)]);
        s = ge;
      }
    };
    for (let g = 0; g < sb.groupCount; g++) {
      const desc = this.gdt[Math.floor(g / dpb)]!.subarray((g % dpb) * sb.descSize, (g % dpb + 1) * sb.descSize);
      const u32 = (o: number) => desc.readUInt32LE(o) + (sb.descSize >= 64 ? desc.readUInt32LE(o + 0x20) * 2 ** 32 : 0);
      const sum = descChecksum(sb, g, desc);
      if (sum !== undefined && sum !== desc.readUInt16LE(0x1e)) allocError(`group ${g} descriptor checksum mismatch`);
      const [bb, ib, it] = [u32(0), u32(4), u32(8)];
      inFs(bb, 1, `group ${g} block bitmap`);
      inFs(ib, 1, `group ${g} inode bitmap`);
      inFs(it, this.inodeTableBlocks, `group ${g} inode table`);
      const start = groupFirstBlock(sb, g);
      const nBlocks = Math.min(sb.blocksPerGroup, sb.blocksCount - start);
      const free = desc.readUInt16LE(0x0c) + (sb.descSize >= 64 ? desc.readUInt16LE(0x2c) * 65536 : 0);
      addMeta(start, start + Math.min(baseMetaBlocks(sb, g), nBlocks));
      addMeta(bb, bb + 1);
      addMeta(ib, ib + 1);
      addMeta(it, it + this.inodeTableBlocks);
      this.groups.push({ desc, descBlock: Math.floor(g / dpb), bitmapBlock: bb, inodeTable: it, bitmap: Buffer.alloc(0), free, nBlocks, dirty: false });
    }
    let total = 0;
    for (let g = 0; g < sb.groupCount; g++) {
      const gr = this.groups[g]!;
      if (csumGd && gr.desc.readUInt16LE(0x12) & L.BG_BLOCK_UNINIT) {
        // as e2fsprogs materializes it: padding set, the group's share of all groups' metadata used
        gr.bitmap = Buffer.alloc(bs, 0xff);
        gr.bitmap.fill(0, 0, sb.blocksPerGroup / 8);
        setBits(gr.bitmap, gr.nBlocks, 8 * bs);
        for (const [s, e] of meta[g]!) setBits(gr.bitmap, s, e);
      } else {
        gr.bitmap = file.read(gr.bitmapBlock * bs, bs);
        if (sb.csumSeed !== undefined) {
          const c = crc32cRaw(sb.csumSeed, gr.bitmap, 0, sb.blocksPerGroup / 8);
          const lo = gr.desc.readUInt16LE(0x18);
          const hi = sb.descSize >= 0x3a ? gr.desc.readUInt16LE(0x38) : 0;
          if ((sb.descSize >= 0x3a ? c : c & 0xffff) !== (lo | (hi << 16)) >>> 0) allocError(`group ${g} block bitmap checksum mismatch`);
        }
        for (const [s, e] of meta[g]!) for (let i = s; i < e; i++) if (!bit(gr.bitmap, i)) allocError(`group ${g} block bitmap marks metadata block ${groupFirstBlock(sb, g) + i} free`);
      }
      const base = groupFirstBlock(sb, g);
      let free = 0;
      for (let i = 0; i < gr.nBlocks; ) {
        if ((i & 7) === 0 && i + 8 <= gr.nBlocks && gr.bitmap[i >>> 3] === 0xff) {
          i += 8;
          continue;
        }
        if (bit(gr.bitmap, i)) {
          i++;
          continue;
        }
        let j = i;
        while (j < gr.nBlocks && !bit(gr.bitmap, j)) j++;
        this.addFree(base + i, j - i);
        free += j - i;
        i = j;
      }
      if (free !== gr.free) allocError(`group ${g}: descriptor says ${gr.free} free blocks, its bitmap ${free}`);
      total += free;
    }
    if (total !== sb.freeBlocks) allocError(`superblock says ${sb.freeBlocks} free blocks, the groups ${total}`);
  }

  private addFree(s: number, n: number): void {
    const k = this.starts.length - 1;
    if (k >= 0 && this.starts[k]! + this.lens[k]! === s) this.lens[k]! += n;
    else {
      this.starts.push(s);
      this.lens.push(n);
    }
  }

  /** First block of the flex group (or group) holding inode `ino`: where its data should go. */
  goalFor(ino: number): number {
    const g = Math.floor((ino - 1) / this.sb.inodesPerGroup);
    return groupFirstBlock(this.sb, (g >> this.sb.logGroupsPerFlex) << this.sb.logGroupsPerFlex);
  }

  /** Device byte offset of inode `ino`, checked. */
  inodeOffset(ino: number): number {
    const sb = this.sb;
    if (!Number.isInteger(ino) || ino < 1 || ino > sb.inodesCount) allocError(`inode ${ino} out of range`);
    const g = Math.floor((ino - 1) / sb.inodesPerGroup);
    return this.groups[g]!.inodeTable * sb.blockSize + ((ino - 1) % sb.inodesPerGroup) * sb.inodeSize;
  }

  /**
   * `n` blocks as few runs as free space allows: the first free run from
   * `goal` on (wrapping) that holds them all, else pieces in block order.
   * Marked used in the bitmaps at once.
   */
  take(goal: number, n: number): Array<[number, number]> {
    const m = this.starts.length;
    let lo = 0;
    for (let hi = m; lo < hi; ) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! < goal) lo = mid + 1;
      else hi = mid;
    }
    const out: Array<[number, number]> = [];
    const cut = (i: number, k: number) => {
      out.push([this.starts[i]!, k]);
      this.mark(this.starts[i]!, k);
      this.starts[i]! += k;
      this.lens[i]! -= k;
    };
    for (let t = 0; t < m; t++) {
      const i = (lo + t) % m;
      if (this.lens[i]! >= n) {
        cut(i, n);
        return out;
      }
    }
    let left = n;
    for (let t = 0; t < m && left > 0; t++) {
      const i = (lo + t) % m;
      const k = Math.min(this.lens[i]!, left);
      if (k > 0) cut(i, k);
      left -= k;
    }
    if (left > 0) throw new VmdnError('E_IO', `ext4 allocator: no room for ${n} more blocks`);
    return out;
  }

  private mark(s: number, n: number): void {
    const sb = this.sb;
    for (let e = s + n; s < e; ) {
      const g = Math.floor((s - sb.firstDataBlock) / sb.blocksPerGroup);
      const base = groupFirstBlock(sb, g);
      const ge = Math.min(base + this.groups[g]!.nBlocks, e);
      const gr = this.groups[g]!;
      for (let i = s - base; i < ge - base; i++) if (bit(gr.bitmap, i)) allocError(`block ${base + i} handed out twice`);
      setBits(gr.bitmap, s - base, ge - base);
      gr.free -= ge - s;
      gr.dirty = true;
      s = ge;
    }
  }

  /** Write back changed bitmaps, their descriptors and the superblock, checksums recomputed. */
  flush(): void {
    const sb = this.sb;
    const bs = sb.blockSize;
    const dirtyDescBlocks = new Set<number>();
    let used = 0;
    this.groups.forEach((gr, g) => {
      if (!gr.dirty) return;
      const d = gr.desc;
      used += d.readUInt16LE(0x0c) + (sb.descSize >= 64 ? d.readUInt16LE(0x2c) * 65536 : 0) - gr.free;
      d.writeUInt16LE(gr.free & 0xffff, 0x0c);
      if (sb.descSize >= 64) d.writeUInt16LE(Math.floor(gr.free / 65536), 0x2c);
      d.writeUInt16LE(d.readUInt16LE(0x12) & ~L.BG_BLOCK_UNINIT, 0x12);
      if (sb.csumSeed !== undefined) {
        const c = crc32cRaw(sb.csumSeed, gr.bitmap, 0, sb.blocksPerGroup / 8);
        d.writeUInt16LE(c & 0xffff, 0x18);
        if (sb.descSize >= 0x3a) d.writeUInt16LE(c >>> 16, 0x38);
      }
      const sum = descChecksum(sb, g, d);
      if (sum !== undefined) d.writeUInt16LE(sum, 0x1e);
      this.file.write(gr.bitmap, gr.bitmapBlock * bs);
      dirtyDescBlocks.add(gr.descBlock);
    });
    for (const i of dirtyDescBlocks) this.file.write(this.gdt[i]!, descBlockLocation(sb, i) * bs);
    if (!used) return;
    const free = sb.freeBlocks - used;
    this.raw.writeUInt32LE(free % 2 ** 32, 0x0c);
    if (sb.incompat & L.INCOMPAT_64BIT) this.raw.writeUInt32LE(Math.floor(free / 2 ** 32), 0x158);
    if (sb.roCompat & L.RO_COMPAT_METADATA_CSUM) this.raw.writeUInt32LE(crc32cRaw(0xffffffff, this.raw, 0, 0x3fc), 0x3fc);
    this.file.write(this.raw, L.SUPERBLOCK_OFFSET);
  }
}

export function openFsFile(img: FsImage, fd: number): FsFile {
  return new FsFile(fd, img.offset, img.length);
}
