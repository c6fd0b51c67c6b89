/** Group descriptors (32- and 64-byte) and the allocation bitmaps they point to. */
import * as L from './layout.js';
import { crc32cRaw, crc32cU32 } from './crc32c.js';
import { baseMetaBlocks, descBlockLocation, descsPerBlock, groupFirstBlock, type Ext4Super } from './superblock.js';
import type { Ext4Io } from './io.js';
import { formatError } from './io.js';

export interface GroupDescs {
  blockBitmap: number[];
  inodeBitmap: number[];
  inodeTable: number[];
  flags: number[];
}

/** CRC16 (poly 0x8005 reflected, no inversion) as used by the older gdt_csum feature. */
function crc16(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  for (let i = start; i < end; i++) {
    crc ^= data[i];
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc & 0xffff;
}

/** A group descriptor's checksum (crc32c under metadata_csum, crc16 under gdt_csum), undefined without either. */
export function descChecksum(sb: Ext4Super, g: number, d: Uint8Array): number | undefined {
  const le = new Uint8Array(4);
  new DataView(le.buffer).setUint32(0, g, true);
  if (sb.csumSeed !== undefined) {
    let c = crc32cU32(sb.csumSeed, g);
    c = crc32cRaw(c, d, 0, 0x1e);
    c = crc32cRaw(c, new Uint8Array(2));
    c = crc32cRaw(c, d, 0x20, sb.descSize);
    return c & 0xffff;
  }
  if (sb.roCompat & L.RO_COMPAT_GDT_CSUM) {
    let c = crc16(0xffff, sb.uuidBytes);
    c = crc16(c, le);
    c = crc16(c, d, 0, 0x1e);
    if (sb.descSize > 32) c = crc16(c, d, 0x20, sb.descSize);
    return c;
  }
  return undefined;
}

/** Read all descriptors once (they are small) and verify their checksums. */
export async function loadGroupDescs(io: Ext4Io): Promise<GroupDescs> {
  const sb = io.sb;
  const dpb = descsPerBlock(sb);
  const nBlocks = Math.ceil(sb.groupCount / dpb);
  const out: GroupDescs = { blockBitmap: [], inodeBitmap: [], inodeTable: [], flags: [] };
  // Without meta_bg the table is contiguous: one read.
  const contiguous = !(sb.incompat & L.INCOMPAT_META_BG);
  const whole = contiguous ? await io.readBlocks(descBlockLocation(sb, 0), nBlocks, 'group descriptor table') : undefined;
  for (let i = 0; i < nBlocks; i++) {
    const blk = whole ? whole.subarray(i * sb.blockSize, (i + 1) * sb.blockSize) : await io.readBlocks(descBlockLocation(sb, i), 1, 'group descriptor block');
    for (let j = 0; j < dpb && i * dpb + j < sb.groupCount; j++) {
      const g = i * dpb + j;
      const d = blk.subarray(j * sb.descSize, (j + 1) * sb.descSize);
      const lo = L.GROUP_DESC_LO.parse(d);
      const hi = sb.descSize >= 64 ? L.GROUP_DESC_HI.parse(d, 32) : { blockBitmapHi: 0, inodeBitmapHi: 0, inodeTableHi: 0 };
      out.blockBitmap.push(lo.blockBitmapLo + hi.blockBitmapHi * 2 ** 32);
      out.inodeBitmap.push(lo.inodeBitmapLo + hi.inodeBitmapHi * 2 ** 32);
      out.inodeTable.push(lo.inodeTableLo + hi.inodeTableHi * 2 ** 32);
      out.flags.push(lo.flags);
      const sum = descChecksum(sb, g, d);
      if (sum !== undefined && sum !== lo.checksum) io.warn(`ext4: group ${g} descriptor checksum mismatch (stored 0x${lo.checksum.toString(16)}, computed 0x${sum.toString(16)})`);
    }
  }
  return out;
}

/** Blocks of the inode table of one group. */
export const inodeTableBlocks = (io: Ext4Io): number => Math.ceil((io.sb.inodesPerGroup * io.sb.inodeSize) / io.sb.blockSize);

function pushRange(out: Array<[number, number]>, s: number, e: number): void {
  const last = out[out.length - 1];
  if (last && last[1] >= s) last[1] = Math.max(last[1], e);
  else out.push([s, e]);
}

/** Used byte ranges of the device from the block bitmaps; BLOCK_UNINIT groups hold only their own metadata. */
export async function usedRanges(io: Ext4Io, gd: GroupDescs): Promise<Array<[number, number]>> {
  const sb = io.sb;
  const bs = sb.blockSize;
  const out: Array<[number, number]> = [];
  if (sb.firstDataBlock > 0) pushRange(out, 0, sb.firstDataBlock * bs); // boot block before group 0
  const uninitAllowed = sb.csumSeed !== undefined || (sb.roCompat & L.RO_COMPAT_GDT_CSUM) !== 0;
  const itb = inodeTableBlocks(io);
  for (let g = 0; g < sb.groupCount; g++) {
    const start = groupFirstBlock(sb, g);
    const nBlocks = Math.min(sb.blocksPerGroup, sb.blocksCount - start);
    const end = start + nBlocks;
    if (uninitAllowed && gd.flags[g] & L.BG_BLOCK_UNINIT) {
      // Like the kernel's ext4_init_block_bitmap: base metadata plus this group's own bitmaps/table if inside it.
      const meta = Math.min(baseMetaBlocks(sb, g), nBlocks);
      const parts: Array<[number, number]> = meta > 0 ? [[start, start + meta]] : [];
      for (const [b, n] of [[gd.blockBitmap[g], 1], [gd.inodeBitmap[g], 1], [gd.inodeTable[g], itb]] as const) {
        if (b >= start && b < end) parts.push([b, Math.min(b + n, end)]);
      }
      parts.sort((a, c) => a[0] - c[0]);
      for (const [s, e] of parts) pushRange(out, s * bs, e * bs);
      continue;
    }
    const bitmap = await io.metaBlock(gd.blockBitmap[g], `group ${g} block bitmap`);
    const nClusters = Math.ceil(nBlocks / sb.clusterRatio);
    const cb = sb.clusterRatio * bs;
    let c = 0;
    while (c < nClusters) {
      const byte = bitmap[c >>> 3];
      // Whole-byte fast paths: most bitmap bytes are all free or all used.
      if ((c & 7) === 0 && c + 8 <= nClusters && (byte === 0 || byte === 0xff)) {
        if (byte === 0xff) pushRange(out, start * bs + c * cb, start * bs + (c + 8) * cb);
        c += 8;
        continue;
      }
      if (byte & (1 << (c & 7))) pushRange(out, start * bs + c * cb, Math.min(start * bs + (c + 1) * cb, end * bs));
      c++;
    }
  }
  // Clip the last cluster to the filesystem end.
  const fsEnd = sb.blocksCount * bs;
  while (out.length && out[out.length - 1][0] >= fsEnd) out.pop();
  if (out.length && out[out.length - 1][1] > fsEnd) out[out.length - 1][1] = fsEnd;
  return out;
}

