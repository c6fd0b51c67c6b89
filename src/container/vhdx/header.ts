/**
 * VHDX headers, region table and metadata, every field checked against the
 * file size and sane bounds so the reader can trust the numbers. Error codes:
 * past EOF -> E_TRUNCATED, nonsense (bad signature or checksum, overlapping
 * regions) -> E_FORMAT, valid but not implemented -> E_UNSUPPORTED.
 */
import { VmdnError, type ErrorCode } from '../../errors.js';
import { crc32c } from './crc32c.js';
import type { FileView } from './log.js';
import {
  vhdxHeader, regionTableHeader, regionEntry, metadataTableHeader, metadataEntry, fileParameters, HEADER_OFFSETS, HEADER_SIZE,
  REGION_TABLE_OFFSETS, REGION_TABLE_SIZE, HEADER_SECTION, HEAD_SIGNATURE, REGI_SIGNATURE, METADATA_SIGNATURE, CHECKSUM_AT,
  MAX_REGION_ENTRIES, REGION_REQUIRED, MAX_METADATA_ENTRIES, METADATA_TABLE_SIZE, MAX_METADATA_ITEM, META_IS_REQUIRED,
  PARAM_HAS_PARENT, REGION, META, MiB, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE, MAX_VIRTUAL_SIZE, sameGuid, guidText,
} from './layout.js';

export function fail(code: ErrorCode, path: string, msg: string, data: Record<string, unknown> = {}): never {
  throw new VmdnError(code, `${path}: ${msg}`, { path, ...data });
}

export interface VhdxHeaderInfo {
  readonly index: number;
  readonly sequence: bigint;
  readonly dataWriteGuid: Uint8Array;
  readonly logGuid: Uint8Array;
  readonly logOffset: number;
  readonly logLength: number;
}

export interface Region {
  readonly offset: number;
  readonly length: number;
}

export interface VhdxMeta {
  readonly blockSize: number;
  readonly hasParent: boolean;
  readonly virtualSize: number;
  readonly logicalSector: number;
  readonly physicalSector: number;
  readonly page83: Uint8Array;
  /** The parent locator item (differencing disks): its bytes, parsed by parent.ts. */
  readonly parentLocator: Uint8Array | null;
}

function num(v: bigint, path: string, field: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('E_FORMAT', path, `${field} ${v} is out of range`, { field });
  return Number(v);
}

export function overlaps(a: Region, b: Region): boolean {
  return a.offset < b.offset + b.length && b.offset < a.offset + a.length;
}

/** A region above the header section, 1 MiB aligned, inside the file. */
export function checkRegion(path: string, what: string, r: Region, fileSize: number): void {
  if (r.offset < HEADER_SECTION || r.offset % MiB !== 0) fail('E_FORMAT', path, `${what} at ${r.offset} is not 1 MiB aligned above the header section`, { field: what });
  if (r.offset + r.length > fileSize) fail('E_TRUNCATED', path, `${what} (${r.offset}+${r.length}) lies past end of file (${fileSize})`, { field: what });
}

const isZeroGuid = (g: Uint8Array): boolean => g.every((x) => x === 0);

/** The current header: the valid one (signature, CRC-32C, version 1) with the higher sequence number. */
export async function parseHeaders(view: FileView): Promise<VhdxHeaderInfo> {
  const path = view.path;
  const found: Array<VhdxHeaderInfo & { raw: ReturnType<typeof vhdxHeader.parse> }> = [];
  for (const [index, at] of HEADER_OFFSETS.entries()) {
    const buf = await view.read(at, HEADER_SIZE);
    const h = vhdxHeader.parse(buf);
    if (h.signature !== HEAD_SIGNATURE || crc32c(buf, CHECKSUM_AT) !== h.checksum) continue;
    if (h.version !== 1) fail('E_UNSUPPORTED', path, `VHDX version ${h.version} is not supported`, { field: 'version' });
    found.push({ index, sequence: h.sequenceNumber, dataWriteGuid: h.dataWriteGuid, logGuid: h.logGuid, logOffset: 0, logLength: 0, raw: h });
  }
  if (found.length === 0) fail('E_FORMAT', path, 'neither VHDX header is valid (bad signature or checksum)', { field: 'header' });
  if (found.length === 2 && found[0].sequence === found[1].sequence) fail('E_FORMAT', path, 'both VHDX headers carry the same sequence number', { field: 'header' });
  const cur = found.length === 2 && found[1].sequence > found[0].sequence ? found[1] : found[0];
  const h = cur.raw;
  const log = { offset: num(h.logOffset, path, 'log offset'), length: h.logLength };
  if (log.length % MiB !== 0) fail('E_FORMAT', path, `log length ${log.length} is not a multiple of 1 MiB`, { field: 'logLength' });
  if (log.length > 0) checkRegion(path, 'log', log, view.size);
  if (!isZeroGuid(h.logGuid) && log.length === 0) fail('E_FORMAT', path, 'the header names a log but the log is empty', { field: 'logGuid' });
  return { index: cur.index, sequence: cur.sequence, dataWriteGuid: h.dataWriteGuid, logGuid: h.logGuid, logOffset: log.offset, logLength: log.length };
}

export function hasLog(h: VhdxHeaderInfo): boolean {
  return !isZeroGuid(h.logGuid);
}

/** BAT and metadata regions from the first valid region table (the second is its copy). */
export async function parseRegions(view: FileView, log: Region): Promise<{ bat: Region; metadata: Region }> {
  const path = view.path;
  for (const at of REGION_TABLE_OFFSETS) {
    const buf = await view.read(at, REGION_TABLE_SIZE);
    const h = regionTableHeader.parse(buf);
    if (h.signature !== REGI_SIGNATURE || crc32c(buf, CHECKSUM_AT) !== h.checksum) continue;
    if (h.entryCount > MAX_REGION_ENTRIES) fail('E_FORMAT', path, `region table of ${h.entryCount} entries (at most ${MAX_REGION_ENTRIES})`, { field: 'regions' });
    let bat: Region | null = null;
    let metadata: Region | null = null;
    for (let i = 0; i < h.entryCount; i++) {
      const e = regionEntry.parse(buf, regionTableHeader.size + i * regionEntry.size);
      const r = { offset: num(e.fileOffset, path, 'region offset'), length: e.length };
      const which = sameGuid(e.guid, REGION.BAT) ? 'BAT' : sameGuid(e.guid, REGION.METADATA) ? 'metadata' : null;
      if (which === null) {
        if (e.dataBits & REGION_REQUIRED) fail('E_UNSUPPORTED', path, `required region ${guidText(e.guid)} is not known`, { field: 'regions' });
        continue;
      }
      if ((which === 'BAT' ? bat : metadata) !== null) fail('E_FORMAT', path, `the region table lists the ${which} twice`, { field: 'regions' });
      if (r.length === 0 || r.length % MiB !== 0) fail('E_FORMAT', path, `${which} region length ${r.length} is not a positive multiple of 1 MiB`, { field: 'regions' });
      checkRegion(path, `${which} region`, r, view.size);
      if (log.length > 0 && overlaps(r, log)) fail('E_FORMAT', path, `${which} region overlaps the log`, { field: 'regions' });
      if (which === 'BAT') bat = r;
      else metadata = r;
    }
    if (!bat || !metadata) fail('E_FORMAT', path, 'the region table lacks the BAT or the metadata region', { field: 'regions' });
    if (overlaps(bat, metadata)) fail('E_FORMAT', path, 'the BAT and metadata regions overlap', { field: 'regions' });
    return { bat, metadata };
  }
  fail('E_FORMAT', path, 'neither VHDX region table is valid (bad signature or checksum)', { field: 'regions' });
}

const KNOWN = Object.entries(META) as Array<[keyof typeof META, Uint8Array]>;

/** The metadata items this reader needs, each checked for size and bounds. */
export async function parseMetadata(view: FileView, region: Region): Promise<VhdxMeta> {
  const path = view.path;
  const table = await view.read(region.offset, METADATA_TABLE_SIZE);
  const h = metadataTableHeader.parse(table);
  if (Buffer.from(h.signature).toString('latin1') !== METADATA_SIGNATURE) fail('E_FORMAT', path, 'bad metadata table signature', { field: 'metadata' });
  if (h.entryCount > MAX_METADATA_ENTRIES) fail('E_FORMAT', path, `metadata table of ${h.entryCount} entries (at most ${MAX_METADATA_ENTRIES})`, { field: 'metadata' });
  const items = new Map<keyof typeof META, Buffer>();
  for (let i = 0; i < h.entryCount; i++) {
    const e = metadataEntry.parse(table, metadataTableHeader.size + i * metadataEntry.size);
    const known = KNOWN.find(([, g]) => sameGuid(g, e.itemId));
    if (!known) {
      if (e.dataBits & META_IS_REQUIRED) fail('E_UNSUPPORTED', path, `required metadata item ${guidText(e.itemId)} is not known`, { field: 'metadata' });
      continue;
    }
    const name = known[0];
    if (items.has(name)) fail('E_FORMAT', path, `metadata item ${name} appears twice`, { field: 'metadata' });
    if (e.length > MAX_METADATA_ITEM || (e.length > 0 && e.offset < METADATA_TABLE_SIZE) || e.offset + e.length > region.length) {
      fail('E_FORMAT', path, `metadata item ${name} (${e.offset}+${e.length}) lies outside the metadata region`, { field: 'metadata' });
    }
    items.set(name, await view.read(region.offset + e.offset, e.length));
  }
  const item = (name: keyof typeof META, size: number): Buffer => {
    const b = items.get(name);
    if (!b) fail('E_FORMAT', path, `metadata item ${name} is missing`, { field: name });
    if (b.length < size) fail('E_FORMAT', path, `metadata item ${name} is ${b.length} bytes, expected ${size}`, { field: name });
    return b;
  };
  const params = fileParameters.parse(item('FILE_PARAMETERS', 8));
  const bs = params.blockSize;
  if (bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE || (bs & (bs - 1)) !== 0) {
    fail('E_FORMAT', path, `block size ${bs} is not a power of two in [1 MiB, 256 MiB]`, { field: 'blockSize' });
  }
  const logicalSector = item('LOGICAL_SECTOR_SIZE', 4).readUInt32LE(0);
  const physicalSector = item('PHYSICAL_SECTOR_SIZE', 4).readUInt32LE(0);
  for (const [what, v] of [['logical', logicalSector], ['physical', physicalSector]] as const) {
    if (v !== 512 && v !== 4096) fail('E_FORMAT', path, `${what} sector size ${v} is neither 512 nor 4096`, { field: `${what}SectorSize` });
  }
  const size = item('VIRTUAL_DISK_SIZE', 8).readBigUInt64LE(0);
  if (size > BigInt(MAX_VIRTUAL_SIZE) || size % BigInt(logicalSector) !== 0n) {
    fail('E_FORMAT', path, `virtual size ${size} is not a multiple of the ${logicalSector}-byte sector up to 64 TiB`, { field: 'virtualSize' });
  }
  const page83 = item('PAGE83', 16).subarray(0, 16);
  const hasParent = (params.dataBits & PARAM_HAS_PARENT) !== 0;
  const parentLocator = hasParent ? item('PARENT_LOCATOR', 20) : null;
  return { blockSize: bs, hasParent, virtualSize: Number(size), logicalSector, physicalSector, page83, parentLocator };
}
