/**
 * VDI header and block map, every field checked against the file size and
 * sane bounds. Past EOF -> E_TRUNCATED, nonsense -> E_FORMAT, valid but not
 * implemented (other versions, differencing/undo images) -> E_UNSUPPORTED.
 */
import { VmdnError, type ErrorCode } from '../../errors.js';
import {
  vdiHeader, HEADER_BYTES, VDI_SIGNATURE, VDI_VERSION_1_1, VDI_HEADER_SIZE_1_1, IMAGE_TYPE, SECTOR, MIN_BLOCK_BITS,
  MAX_BLOCK_BITS, MAX_BLOCKS, BMAP_UNALLOCATED, BMAP_DISCARDED,
} from './layout.js';

export interface VdiInfo {
  readonly imageType: 'dynamic' | 'static';
  readonly virtualSize: number;
  readonly blockSize: number;
  readonly blocks: number;
  readonly offsetBmap: number;
  readonly offsetData: number;
}

function fail(code: ErrorCode, path: string, msg: string, data: Record<string, unknown> = {}): never {
  throw new VmdnError(code, `${path}: ${msg}`, { path, ...data });
}

const isNull = (u: Uint8Array): boolean => u.every((b) => b === 0);

export function parseVdiHeader(buf: Uint8Array, path: string, fileSize: number): VdiInfo {
  if (buf.length < HEADER_BYTES) fail('E_TRUNCATED', path, `file too small for a VDI header (${fileSize} bytes)`);
  const h = vdiHeader.parse(buf);
  if (h.signature !== VDI_SIGNATURE) fail('E_FORMAT', path, 'not a VDI image (bad signature)');
  if (h.version !== VDI_VERSION_1_1) fail('E_UNSUPPORTED', path, `VDI version 0x${h.version.toString(16)} is not supported (only 1.1)`);
  if (h.headerSize !== VDI_HEADER_SIZE_1_1) fail('E_FORMAT', path, `header size 0x${h.headerSize.toString(16)} is not 0x${VDI_HEADER_SIZE_1_1.toString(16)}`, { field: 'headerSize' });
  if (h.imageType !== IMAGE_TYPE.DYNAMIC && h.imageType !== IMAGE_TYPE.STATIC) {
    fail('E_UNSUPPORTED', path, `VDI image type ${h.imageType} is not supported (only dynamic and static)`, { field: 'imageType' });
  }
  if (!isNull(h.uuidLink) || !isNull(h.uuidParent)) fail('E_UNSUPPORTED', path, 'differencing VDI images are not supported');
  if (h.sectorSize !== SECTOR) fail('E_FORMAT', path, `sector size ${h.sectorSize} is not ${SECTOR}`, { field: 'sectorSize' });
  const bits = Math.log2(h.blockSize);
  if (!Number.isInteger(bits) || bits < MIN_BLOCK_BITS || bits > MAX_BLOCK_BITS) {
    fail('E_FORMAT', path, `block size ${h.blockSize} is not a power of two in [${2 ** MIN_BLOCK_BITS}, ${2 ** MAX_BLOCK_BITS}]`, { field: 'blockSize' });
  }
  if (h.blockExtra !== 0) fail('E_UNSUPPORTED', path, `block_extra ${h.blockExtra} is not supported`, { field: 'blockExtra' });
  if (h.blocksInImage > MAX_BLOCKS) fail('E_FORMAT', path, `${h.blocksInImage} blocks exceed ${MAX_BLOCKS}`, { field: 'blocksInImage' });
  if (h.diskSize % BigInt(SECTOR) !== 0n) fail('E_FORMAT', path, `disk size ${h.diskSize} is not a multiple of ${SECTOR}`, { field: 'diskSize' });
  if (h.diskSize > BigInt(h.blocksInImage) * BigInt(h.blockSize)) {
    fail('E_FORMAT', path, `disk size ${h.diskSize} exceeds ${h.blocksInImage} blocks of ${h.blockSize}`, { field: 'diskSize' });
  }
  if (h.blocksAllocated > h.blocksInImage) fail('E_FORMAT', path, `${h.blocksAllocated} blocks allocated of ${h.blocksInImage}`, { field: 'blocksAllocated' });
  if (h.offsetBmap % SECTOR !== 0 || h.offsetData % SECTOR !== 0) fail('E_FORMAT', path, 'block map or data offset not sector-aligned');
  if (h.offsetBmap < HEADER_BYTES) fail('E_FORMAT', path, `block map at ${h.offsetBmap} overlaps the header`, { field: 'offsetBmap' });
  const bmapEnd = h.offsetBmap + h.blocksInImage * 4;
  if (h.offsetData < bmapEnd) fail('E_FORMAT', path, `data at ${h.offsetData} overlaps the block map (ends at ${bmapEnd})`, { field: 'offsetData' });
  if (bmapEnd > fileSize) fail('E_TRUNCATED', path, `block map (${h.offsetBmap}+${h.blocksInImage * 4}) lies past end of file (${fileSize})`);
  return {
    imageType: h.imageType === IMAGE_TYPE.STATIC ? 'static' : 'dynamic',
    virtualSize: Number(h.diskSize), blockSize: h.blockSize, blocks: h.blocksInImage, offsetBmap: h.offsetBmap, offsetData: h.offsetData,
  };
}

/**
 * The block map (`raw`, little-endian) as block -> file offset (-1: reads
 * zeros). Only the blocks covering the disk are used; each must lie inside
 * the file and no two may share one data block.
 */
export function parseBlockMap(raw: Uint8Array, info: VdiInfo, path: string, fileSize: number): Float64Array {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const used = Math.ceil(info.virtualSize / info.blockSize);
  const out = new Float64Array(used).fill(-1);
  const seen = new Uint8Array(info.blocks);
  for (let i = 0; i < used; i++) {
    const e = dv.getUint32(i * 4, true);
    if (e === BMAP_UNALLOCATED || e === BMAP_DISCARDED) continue;
    if (e >= info.blocks) fail('E_FORMAT', path, `block map entry ${i} points to data block ${e} of ${info.blocks}`, { field: 'bmap', block: i });
    if (seen[e]) fail('E_FORMAT', path, `two block map entries point to data block ${e}`, { field: 'bmap', block: i });
    seen[e] = 1;
    const at = info.offsetData + e * info.blockSize;
    if (at + info.blockSize > fileSize) fail('E_TRUNCATED', path, `block ${i} (at ${at}) lies past end of file (${fileSize})`, { field: 'bmap', block: i });
    out[i] = at;
  }
  return out;
}
