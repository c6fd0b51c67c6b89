/**
 * Dynamic VHDX writer: file identifier, two headers, two region tables, an
 * empty 1 MiB log, the metadata region and the BAT up front, then 2 MiB
 * blocks appended in guest order (all-zero blocks stay NOT_PRESENT). The
 * tables precede the data, so they are written at the end (no pipe output);
 * the file identifier last, so an unfinished file is never a VHDX.
 */
import { randomBytes } from 'node:crypto';
import type { DiskWriter } from '../disk.js';
import { VmdnError } from '../../errors.js';
import { createBlockWriter } from '../block-writer.js';
import { checkVirtualSize, type TempFile } from '../writer-file.js';
import { setCrc32c } from './crc32c.js';
import {
  vhdxHeader, regionTableHeader, regionEntry, metadataTableHeader, metadataEntry, fileParameters, HEADER_OFFSETS, HEADER_SIZE,
  REGION_TABLE_OFFSETS, REGION_TABLE_SIZE, HEAD_SIGNATURE, REGI_SIGNATURE, METADATA_SIGNATURE, CHECKSUM_AT, REGION_REQUIRED,
  METADATA_TABLE_SIZE, META_IS_REQUIRED, META_IS_VIRTUAL_DISK, REGION, META, FILE_ID_SIGNATURE, PAYLOAD, BAT_OFFSET_SHIFT, MiB,
  DEFAULT_BLOCK_SIZE, DEFAULT_LOGICAL_SECTOR, DEFAULT_PHYSICAL_SECTOR, LOG_SIZE, MAX_VIRTUAL_SIZE, batEntries, chunkRatio, payloadIndex,
} from './layout.js';

const LOG_AT = MiB;
const METADATA_AT = LOG_AT + LOG_SIZE;
const METADATA_SIZE = MiB;
const BAT_AT = METADATA_AT + METADATA_SIZE;

export interface VhdxLayout {
  readonly virtualSize: number;
  readonly blockSize: number;
  readonly batAt: number;
  readonly batLength: number;
  readonly dataStart: number;
}

export function vhdxLayout(virtualSize: number, blockSize = DEFAULT_BLOCK_SIZE): VhdxLayout {
  const size = Math.ceil(virtualSize / DEFAULT_LOGICAL_SECTOR) * DEFAULT_LOGICAL_SECTOR;
  const batLength = Math.max(MiB, Math.ceil((batEntries(size, blockSize, DEFAULT_LOGICAL_SECTOR, false) * 8) / MiB) * MiB);
  return { virtualSize: size, blockSize, batAt: BAT_AT, batLength, dataStart: BAT_AT + batLength };
}

/** Header `i` (0 or 1) of the pair; the second has the higher sequence number and is the current one. */
export function buildHeader(seq: bigint, dataWriteGuid: Uint8Array, logGuid = new Uint8Array(16)): Uint8Array {
  const buf = vhdxHeader.write({
    signature: HEAD_SIGNATURE, checksum: 0, sequenceNumber: seq, fileWriteGuid: randomBytes(16), dataWriteGuid, logGuid,
    logVersion: 0, version: 1, logLength: LOG_SIZE, logOffset: BigInt(LOG_AT),
  });
  setCrc32c(buf, CHECKSUM_AT);
  return buf;
}

function buildRegionTable(l: VhdxLayout): Uint8Array {
  const buf = new Uint8Array(REGION_TABLE_SIZE);
  regionTableHeader.write({ signature: REGI_SIGNATURE, checksum: 0, entryCount: 2 }, buf);
  regionEntry.write({ guid: REGION.BAT, fileOffset: BigInt(l.batAt), length: l.batLength, dataBits: REGION_REQUIRED }, buf, 16);
  regionEntry.write({ guid: REGION.METADATA, fileOffset: BigInt(METADATA_AT), length: METADATA_SIZE, dataBits: REGION_REQUIRED }, buf, 48);
  setCrc32c(buf, CHECKSUM_AT);
  return buf;
}

function buildMetadata(l: VhdxLayout): Uint8Array {
  const buf = Buffer.alloc(METADATA_TABLE_SIZE + 64);
  const items: Array<[Uint8Array, Uint8Array, number]> = [
    [META.FILE_PARAMETERS, fileParameters.write({ blockSize: l.blockSize, dataBits: 0 }), META_IS_REQUIRED],
    [META.VIRTUAL_DISK_SIZE, u64(l.virtualSize), META_IS_REQUIRED | META_IS_VIRTUAL_DISK],
    [META.PAGE83, randomBytes(16), META_IS_REQUIRED | META_IS_VIRTUAL_DISK],
    [META.LOGICAL_SECTOR_SIZE, u32(DEFAULT_LOGICAL_SECTOR), META_IS_REQUIRED | META_IS_VIRTUAL_DISK],
    [META.PHYSICAL_SECTOR_SIZE, u32(DEFAULT_PHYSICAL_SECTOR), META_IS_REQUIRED | META_IS_VIRTUAL_DISK],
  ];
  metadataTableHeader.write({ signature: Buffer.from(METADATA_SIGNATURE, 'latin1'), entryCount: items.length }, buf);
  let at = METADATA_TABLE_SIZE;
  for (const [i, [id, data, bits]] of items.entries()) {
    metadataEntry.write({ itemId: id, offset: at, length: data.length, dataBits: bits }, buf, metadataTableHeader.size + i * metadataEntry.size);
    buf.set(data, at);
    at += data.length;
  }
  return buf;
}

const u64 = (v: number): Uint8Array => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const u32 = (v: number): Uint8Array => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };

function buildBat(l: VhdxLayout, blocks: Float64Array): Buffer {
  const ratio = chunkRatio(l.blockSize, DEFAULT_LOGICAL_SECTOR);
  const bat = Buffer.alloc(l.batLength);
  for (let b = 0; b < blocks.length; b++) {
    if (blocks[b] < 0) continue; // NOT_PRESENT: zero entry
    bat.writeBigUInt64LE((BigInt(blocks[b] / MiB) << BAT_OFFSET_SHIFT) | BigInt(PAYLOAD.FULLY_PRESENT), payloadIndex(b, ratio) * 8);
  }
  return bat;
}

function fileIdentifier(): Uint8Array {
  const buf = Buffer.alloc(HEADER_OFFSETS[0]);
  buf.write(FILE_ID_SIGNATURE, 0, 'latin1');
  buf.write('vmdn', 8, 'utf16le');
  return buf;
}

export async function createVhdxWriter(outPath: string, virtualSize: number): Promise<DiskWriter> {
  checkVirtualSize(virtualSize, Number.MAX_SAFE_INTEGER);
  if (virtualSize > MAX_VIRTUAL_SIZE) throw new VmdnError('E_USAGE', `a VHDX holds at most ${MAX_VIRTUAL_SIZE} bytes; this disk has ${virtualSize}`, { virtualSize });
  const l = vhdxLayout(virtualSize);
  return createBlockWriter(outPath, virtualSize, {
    blockSize: l.blockSize,
    dataStart: l.dataStart,
    prefix: new Uint8Array(0),
    async finish(file: TempFile, blocks: Float64Array, end: number): Promise<void> {
      const put = (b: Uint8Array, at: number): Promise<void> => file.writeAt(b, 0, b.length, at);
      // Zero runs at the end of the last block were skipped: the file must still hold it whole.
      await file.fh.truncate(end);
      await put(buildBat(l, blocks), l.batAt);
      await put(buildMetadata(l), METADATA_AT);
      const rt = buildRegionTable(l);
      for (const at of REGION_TABLE_OFFSETS) await put(rt, at);
      const dataWriteGuid = randomBytes(16);
      for (const [i, at] of HEADER_OFFSETS.entries()) await put(buildHeader(BigInt(i + 1), dataWriteGuid), at);
      await put(fileIdentifier(), 0);
    },
  });
}

export { HEADER_SIZE, LOG_AT, METADATA_AT };
