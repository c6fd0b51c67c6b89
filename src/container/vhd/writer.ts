/**
 * VHD writers. Fixed: the raw disk then the footer, so it streams (the raw
 * writer with a trailer, or stdout). Dynamic: footer copy, dynamic header and
 * BAT up front, then 2 MiB blocks (a full sector bitmap + data) appended in
 * guest order, all-zero blocks left unallocated, the footer last.
 *
 * Sizes: VHD counts whole sectors; a fixed VHD's size is rounded up to a
 * whole MiB because Azure accepts no other (the padding reads as zeros).
 * The creator field says "qem2", qemu's marker for "the footer's size is the
 * disk size" (Hyper-V and Azure read that field too); readers that go by the
 * CHS geometry alone (Virtual PC) may see a disk up to a few MiB smaller.
 */
import { randomBytes } from 'node:crypto';
import type { DiskWriter } from '../disk.js';
import { VmdnError } from '../../errors.js';
import { createRawWriter, type RawTrailer } from '../raw-writer.js';
import { createBlockWriter } from '../block-writer.js';
import { checkVirtualSize, type TempFile } from '../writer-file.js';
import {
  vhdFooter, vhdDynHeader, FOOTER_SIZE, DYN_HEADER_SIZE, FOOTER_COOKIE, DYN_COOKIE, FOOTER_CHECKSUM_AT, DYN_CHECKSUM_AT,
  DISK_TYPE, VHD_VERSION, FEATURES_RESERVED, NO_OFFSET, BAT_UNUSED, MAX_VIRTUAL_SIZE, DEFAULT_BLOCK_SIZE, SECTOR,
  vhdChecksum, bitmapSize, chsGeometry, ascii,
} from './layout.js';

const MiB = 1 << 20;
/** Seconds from the Unix epoch to the VHD one (2000-01-01 UTC). */
const VHD_EPOCH = 946684800;

/** Size of the data area of a fixed VHD for a disk of `virtualSize` bytes: whole MiB, as Azure requires. */
export function fixedVhdSize(virtualSize: number): number {
  return Math.ceil(virtualSize / MiB) * MiB;
}

function sectorSize(virtualSize: number): number {
  return Math.ceil(virtualSize / SECTOR) * SECTOR;
}

function checkSize(virtualSize: number, size: number): void {
  checkVirtualSize(virtualSize, Number.MAX_SAFE_INTEGER);
  if (size > MAX_VIRTUAL_SIZE) throw new VmdnError('E_USAGE', `a VHD holds at most ${MAX_VIRTUAL_SIZE} bytes; this disk has ${virtualSize}`, { virtualSize });
}

export function buildFooter(type: number, size: number, dataOffset: bigint): Uint8Array {
  const g = chsGeometry(size / SECTOR);
  const buf = vhdFooter.write({
    cookie: ascii(FOOTER_COOKIE), features: FEATURES_RESERVED, version: VHD_VERSION, dataOffset,
    timestamp: Math.max(0, Math.floor(Date.now() / 1000) - VHD_EPOCH) >>> 0,
    creatorApp: ascii('qem2'), creatorVersion: 0x00010000, creatorOs: ascii('Wi2k'),
    originalSize: BigInt(size), currentSize: BigInt(size),
    cylinders: g.cylinders, heads: g.heads, sectorsPerTrack: g.sectorsPerTrack,
    diskType: type, checksum: 0, uniqueId: randomBytes(16), savedState: 0,
  });
  new DataView(buf.buffer, buf.byteOffset).setUint32(FOOTER_CHECKSUM_AT, vhdChecksum(buf, FOOTER_CHECKSUM_AT));
  return buf;
}

/** The trailer of a fixed VHD of `virtualSize` bytes: where the footer goes and its bytes. */
export function fixedVhdTrailer(virtualSize: number): RawTrailer {
  const size = fixedVhdSize(virtualSize);
  checkSize(virtualSize, size);
  return { at: size, bytes: buildFooter(DISK_TYPE.FIXED, size, NO_OFFSET) };
}

export function createFixedVhdWriter(outPath: string, virtualSize: number): Promise<DiskWriter> {
  return createRawWriter(outPath, virtualSize, fixedVhdTrailer(virtualSize));
}

export async function createDynamicVhdWriter(outPath: string, virtualSize: number): Promise<DiskWriter> {
  const size = sectorSize(virtualSize);
  checkSize(virtualSize, size);
  const bs = DEFAULT_BLOCK_SIZE;
  const entries = Math.ceil(size / bs);
  const tableOffset = FOOTER_SIZE + DYN_HEADER_SIZE;
  const dataStart = tableOffset + Math.ceil((entries * 4) / SECTOR) * SECTOR;
  return createBlockWriter(outPath, virtualSize, {
    blockSize: bs,
    dataStart,
    prefix: new Uint8Array(bitmapSize(bs)).fill(0xff), // every sector present
    async finish(file: TempFile, blocks: Float64Array, end: number): Promise<void> {
      const bat = Buffer.alloc(dataStart - tableOffset, 0xff);
      for (let i = 0; i < entries; i++) bat.writeUInt32BE(blocks[i] < 0 ? BAT_UNUSED : blocks[i] / SECTOR, i * 4);
      const header = vhdDynHeader.write({
        cookie: ascii(DYN_COOKIE), dataOffset: NO_OFFSET, tableOffset: BigInt(tableOffset), headerVersion: VHD_VERSION,
        maxTableEntries: entries, blockSize: bs, checksum: 0,
      });
      new DataView(header.buffer, header.byteOffset).setUint32(DYN_CHECKSUM_AT, vhdChecksum(header, DYN_CHECKSUM_AT));
      const footer = buildFooter(DISK_TYPE.DYNAMIC, size, BigInt(FOOTER_SIZE));
      await file.writeAt(bat, 0, bat.length, tableOffset);
      await file.writeAt(header, 0, header.length, FOOTER_SIZE);
      await file.writeAt(footer, 0, footer.length, end);
      // The copy at the start last: until it is written the file is not a VHD.
      await file.writeAt(footer, 0, footer.length, 0);
    },
  });
}
