/**
 * VMDK sparse extent header (and streamOptimized footer) parsing. Every field
 * is checked against the file size and sane bounds here, so the grain reader
 * can trust the numbers. Past EOF -> E_TRUNCATED, nonsense -> E_FORMAT, valid
 * but not implemented -> E_UNSUPPORTED.
 */
import { VmdnError, type ErrorCode } from '../../errors.js';
import {
  sparseHeader, marker, VMDK_MAGIC, SECTOR, FLAGS, COMPRESS_NONE, COMPRESS_DEFLATE, GD_AT_END, NL_CHECK, MARKER,
  MAX_VERSION, MAX_CAPACITY_SECTORS, MIN_GRAIN_SECTORS, MAX_GRAIN_SECTORS, MAX_GTES_PER_GT, MAX_GD_ENTRIES,
  MAX_DESCRIPTOR_BYTES, FOOTER_BYTES,
} from './layout.js';

export interface SparseHeader {
  readonly version: number;
  readonly capacity: number; // sectors
  readonly grainSectors: number;
  readonly gtes: number; // entries per grain table
  readonly gdEntries: number;
  /** Sector of the grain directory; null when it is at the end (then the footer has it). */
  readonly gdOffset: number | null;
  readonly rgdOffset: number | null;
  /** Sectors of metadata at the start; grains live at or after it. */
  readonly overHead: number;
  readonly descriptor: { offset: number; size: number } | null; // sectors
  readonly compressed: boolean;
  readonly zeroGrain: boolean;
}

function fail(code: ErrorCode, path: string, msg: string, data: Record<string, unknown> = {}): never {
  throw new VmdnError(code, `${path}: ${msg}`, { path, format: 'vmdk', ...data });
}

/** u64 sector field -> number, rejecting values no valid image can hold. */
function sectors(v: bigint, max: number, path: string, field: string): number {
  if (v > BigInt(max)) fail('E_FORMAT', path, `${field} ${v} exceeds ${max}`, { field });
  return Number(v);
}

const isPow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/** Sectors a table of `entries` u32 entries occupies. */
export const tableSectors = (entries: number): number => Math.ceil((entries * 4) / SECTOR);

/**
 * Parse the 512-byte header in `buf` (at sector 0, or the footer's copy when
 * `inFooter`). `fileSize` bounds every region the header names.
 */
export function parseSparseHeader(buf: Uint8Array, path: string, fileSize: number, inFooter = false): SparseHeader {
  const where = inFooter ? 'footer header' : 'header';
  if (buf.length < SECTOR) fail('E_TRUNCATED', path, `file too small for a VMDK sparse ${where} (${buf.length} bytes)`);
  const h = sparseHeader.parse(buf);
  if (h.magic !== VMDK_MAGIC) fail('E_FORMAT', path, `not a VMDK sparse extent (bad magic in ${where})`);
  if (h.version === 0) fail('E_FORMAT', path, 'VMDK version 0');
  if (h.version > MAX_VERSION) fail('E_UNSUPPORTED', path, `VMDK version ${h.version} is not supported`, { version: h.version });
  if (h.flags & FLAGS.NL_DETECT && NL_CHECK.some((c, i) => h.nlCheck[i] !== c)) {
    fail('E_FORMAT', path, 'header end-of-line check bytes are damaged (file transferred in text mode?)');
  }
  if (h.compressAlgorithm !== COMPRESS_NONE && h.compressAlgorithm !== COMPRESS_DEFLATE) {
    fail('E_UNSUPPORTED', path, `VMDK compression algorithm ${h.compressAlgorithm} is not supported`);
  }
  const compressed = h.compressAlgorithm === COMPRESS_DEFLATE;
  // Compressed grains are only readable with markers (they carry each grain's length).
  if (compressed !== ((h.flags & FLAGS.MARKERS) !== 0)) {
    fail('E_UNSUPPORTED', path, `compressed grains ${compressed ? 'without' : 'absent, but'} markers (flags 0x${h.flags.toString(16)}) are not supported`);
  }

  const capacity = sectors(h.capacity, MAX_CAPACITY_SECTORS, path, 'capacity');
  if (capacity === 0) fail('E_FORMAT', path, 'capacity is 0', { field: 'capacity' });
  const grainSectors = sectors(h.grainSize, MAX_GRAIN_SECTORS, path, 'grain size');
  if (grainSectors < MIN_GRAIN_SECTORS || !isPow2(grainSectors)) {
    fail('E_FORMAT', path, `grain size ${grainSectors} sectors is not a power of two in [${MIN_GRAIN_SECTORS}, ${MAX_GRAIN_SECTORS}]`, { field: 'grainSize' });
  }
  const gtes = h.numGTEsPerGT;
  if (gtes < 1 || gtes > MAX_GTES_PER_GT) fail('E_FORMAT', path, `numGTEsPerGT ${gtes} outside [1, ${MAX_GTES_PER_GT}]`, { field: 'numGTEsPerGT' });
  const gdEntries = Math.ceil(capacity / (gtes * grainSectors));
  if (gdEntries > MAX_GD_ENTRIES) fail('E_FORMAT', path, `grain directory of ${gdEntries} entries exceeds ${MAX_GD_ENTRIES}`, { field: 'capacity' });

  const fileSectors = Math.floor(fileSize / SECTOR);
  const overHead = sectors(h.overHead, MAX_CAPACITY_SECTORS, path, 'overHead');
  if (overHead < 1) fail('E_FORMAT', path, 'overHead 0 leaves no room for the header', { field: 'overHead' });
  if (overHead > fileSectors) fail('E_TRUNCATED', path, `file ends (${fileSize} bytes) before its metadata area (${overHead} sectors)`);

  let descriptor: SparseHeader['descriptor'] = null;
  if (h.descriptorOffset !== 0n) {
    const offset = sectors(h.descriptorOffset, MAX_CAPACITY_SECTORS, path, 'descriptorOffset');
    const size = sectors(h.descriptorSize, MAX_DESCRIPTOR_BYTES / SECTOR, path, 'descriptorSize');
    if (size === 0) fail('E_FORMAT', path, 'descriptor of 0 sectors', { field: 'descriptorSize' });
    checkRegion(path, 'embedded descriptor', offset, size, fileSectors, null);
    descriptor = { offset, size };
  }

  let gdOffset: number | null = null;
  if (h.gdOffset === GD_AT_END) {
    if (inFooter) fail('E_FORMAT', path, 'footer places the grain directory at the end again');
    if (!compressed) fail('E_FORMAT', path, 'grain directory "at end" in an extent without markers');
  } else {
    gdOffset = sectors(h.gdOffset, MAX_CAPACITY_SECTORS, path, 'gdOffset');
    checkRegion(path, 'grain directory', gdOffset, tableSectors(gdEntries), fileSectors, descriptor);
  }
  let rgdOffset: number | null = null;
  if (h.flags & FLAGS.REDUNDANT_GD && h.rgdOffset !== 0n && h.rgdOffset !== GD_AT_END) {
    // Not read (the primary is), but a redundant directory outside the file means a damaged image.
    rgdOffset = sectors(h.rgdOffset, MAX_CAPACITY_SECTORS, path, 'rgdOffset');
    checkRegion(path, 'redundant grain directory', rgdOffset, tableSectors(gdEntries), fileSectors, descriptor);
  }
  return {
    version: h.version, capacity, grainSectors, gtes, gdEntries, gdOffset, rgdOffset, overHead, descriptor,
    compressed, zeroGrain: (h.flags & FLAGS.ZERO_GRAIN) !== 0,
  };
}

/**
 * A metadata region [offset, offset+count) in sectors: after the header
 * sector, clear of the embedded descriptor, inside the file.
 */
export function checkRegion(path: string, what: string, offset: number, count: number, fileSectors: number, desc: SparseHeader['descriptor']): void {
  if (offset < 1) fail('E_FORMAT', path, `${what} at sector ${offset} overlaps the header`, { field: what });
  if (desc && offset < desc.offset + desc.size && desc.offset < offset + count) {
    fail('E_FORMAT', path, `${what} at sector ${offset} overlaps the embedded descriptor`, { field: what });
  }
  if (offset + count > fileSectors) fail('E_TRUNCATED', path, `${what} (sectors ${offset}+${count}) lies past end of file (${fileSectors} sectors)`, { field: what });
}

/**
 * The streamOptimized footer: the last three sectors are a footer marker, a
 * copy of the header with the real gdOffset, and an end-of-stream marker.
 */
export function parseFooter(tail: Uint8Array, path: string, fileSize: number): SparseHeader {
  if (fileSize % SECTOR !== 0 || tail.length < FOOTER_BYTES) fail('E_TRUNCATED', path, `streamOptimized file of ${fileSize} bytes has no whole footer`);
  const fm = marker.parse(tail, 0);
  const eos = marker.parse(tail, 2 * SECTOR);
  if (fm.size !== 0 || fm.type !== MARKER.FOOTER) fail('E_FORMAT', path, 'no footer marker before the footer (streamOptimized stream cut short?)');
  if (eos.value !== 0n || eos.size !== 0 || eos.type !== MARKER.EOS) fail('E_FORMAT', path, 'no end-of-stream marker at the end of the file');
  return parseSparseHeader(tail.subarray(SECTOR, 2 * SECTOR), path, fileSize, true);
}
