/**
 * qcow2 header + header extension parsing with every field checked against
 * the file size and sane bounds, so later code can trust the numbers.
 * Error codes: past-EOF -> E_TRUNCATED, nonsense -> E_FORMAT, valid but
 * not implemented (encryption, external data, unknown features) -> E_UNSUPPORTED.
 */
import { VmdnError, type ErrorCode } from '../../errors.js';
import {
  qcow2Header, qcow2ExtensionHeader, QCOW2_MAGIC, QCOW2_V2_HEADER_SIZE, QCOW2_V3_MIN_HEADER_SIZE,
  EXT, INCOMPAT, INCOMPAT_KNOWN, COMPRESSION, MIN_CLUSTER_BITS, MAX_CLUSTER_BITS, MAX_VIRTUAL_SIZE,
  MAX_BACKING_NAME, MAX_L1_ENTRIES, MAX_REFTABLE_BYTES, MAX_SNAPSHOTS, MAX_HOST_OFFSET,
  EXTENDED_L2_MIN_CLUSTER_BITS, MAX_BACKING_FORMAT_NAME, FEATURE_NAME_ENTRY_SIZE,
} from './layout.js';

export interface Qcow2Header {
  readonly version: 2 | 3;
  readonly clusterBits: number;
  readonly clusterSize: number;
  readonly virtualSize: number;
  readonly l1Size: number;
  readonly l1TableOffset: number;
  readonly refcountTableOffset: number;
  readonly refcountTableClusters: number;
  readonly extendedL2: boolean;
  readonly compression: 'deflate' | 'zstd';
  readonly backingFile: string | null;
  readonly backingFormat: string | null;
}

/** Enough bytes to read the fixed header fields and learn the cluster size. */
export const HEADER_PROBE_BYTES = qcow2Header.size;

function fail(code: ErrorCode, path: string, msg: string, data: Record<string, unknown> = {}): never {
  throw new VmdnError(code, `${path}: ${msg}`, { path, ...data });
}

/** u64 field -> number, rejecting values no valid image can hold. */
function num(v: bigint, max: number, path: string, field: string): number {
  if (v > BigInt(max)) fail('E_FORMAT', path, `${field} ${v} exceeds ${max}`, { field });
  return Number(v);
}

/**
 * Check that [offset, offset+length) is a cluster-aligned region after the
 * header cluster and inside the file. Past EOF is reported as truncation.
 */
export function checkRegion(path: string, what: string, offset: number, length: number, clusterSize: number, fileSize: number): void {
  if (offset % clusterSize !== 0) fail('E_FORMAT', path, `${what} offset ${offset} is not cluster-aligned`, { field: what });
  if (offset < clusterSize) fail('E_FORMAT', path, `${what} at ${offset} overlaps the header cluster`, { field: what });
  if (offset + length > fileSize) fail('E_TRUNCATED', path, `${what} (${offset}+${length}) lies past end of file (${fileSize})`, { field: what });
}

/** Magic + cluster_bits from the first HEADER_PROBE_BYTES, to know how much of the file is "header cluster". */
export function clusterBitsOf(buf: Uint8Array, path: string, fileSize: number): number {
  if (buf.length < QCOW2_V2_HEADER_SIZE) fail('E_TRUNCATED', path, `file too small for a qcow2 header (${fileSize} bytes)`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  if (dv.getUint32(0) !== QCOW2_MAGIC) fail('E_FORMAT', path, 'not a qcow2 image (bad magic)');
  const bits = dv.getUint32(20);
  if (bits < MIN_CLUSTER_BITS || bits > MAX_CLUSTER_BITS) {
    fail('E_FORMAT', path, `cluster_bits ${bits} outside [${MIN_CLUSTER_BITS}, ${MAX_CLUSTER_BITS}]`, { field: 'clusterBits' });
  }
  return bits;
}

/** Parse `buf`, the first min(clusterSize, fileSize) bytes of the file. */
export function parseQcow2Header(buf: Uint8Array, path: string, fileSize: number): Qcow2Header {
  const clusterBits = clusterBitsOf(buf, path, fileSize);
  const clusterSize = 2 ** clusterBits;
  // Zero-pad so v2 images (72-byte header) parse with the 112-byte struct.
  const fixed = new Uint8Array(qcow2Header.size);
  fixed.set(buf.subarray(0, Math.min(buf.length, qcow2Header.size)));
  const h = qcow2Header.parse(fixed);
  if (h.version !== 2 && h.version !== 3) fail('E_UNSUPPORTED', path, `qcow2 version ${h.version} is not supported`);
  const version = h.version as 2 | 3;

  let headerLength = QCOW2_V2_HEADER_SIZE;
  let incompat = 0n;
  let compressionType = 0;
  if (version === 3) {
    if (buf.length < QCOW2_V3_MIN_HEADER_SIZE) fail('E_TRUNCATED', path, 'v3 header extends past end of file');
    headerLength = h.headerLength;
    if (headerLength < QCOW2_V3_MIN_HEADER_SIZE || headerLength % 8 !== 0 || headerLength > clusterSize) {
      fail('E_FORMAT', path, `bad header_length ${headerLength}`, { field: 'headerLength' });
    }
    if (h.refcountOrder > 6) fail('E_FORMAT', path, `refcount_order ${h.refcountOrder} > 6`, { field: 'refcountOrder' });
    incompat = h.incompatibleFeatures;
    compressionType = headerLength > 104 ? h.compressionType : 0;
  }
  if (buf.length < headerLength) fail('E_TRUNCATED', path, `header (${headerLength} bytes) extends past end of file`);

  // Extensions first: the feature name table makes the feature errors readable.
  const ext = parseExtensions(buf, path, headerLength, clusterSize, h.backingFileOffset);

  if (incompat & ~INCOMPAT_KNOWN) {
    const bits = [...Array(64).keys()].filter((b) => (incompat & ~INCOMPAT_KNOWN & (1n << BigInt(b))) !== 0n);
    const names = bits.map((b) => ext.featureNames.get(b) ?? `bit ${b}`);
    fail('E_UNSUPPORTED', path, `unknown incompatible qcow2 features: ${names.join(', ')}`, { features: bits });
  }
  if (incompat & INCOMPAT.DIRTY) fail('E_FORMAT', path, 'image is marked dirty (not cleanly closed); repair it with `qemu-img check -r all`');
  if (incompat & INCOMPAT.CORRUPT) fail('E_FORMAT', path, 'image is marked corrupt; repair it with `qemu-img check -r all`');
  if (incompat & INCOMPAT.EXTERNAL_DATA_FILE || ext.externalData) fail('E_UNSUPPORTED', path, 'qcow2 images with an external data file are not supported');
  if (h.cryptMethod !== 0 || ext.encryption) fail('E_UNSUPPORTED', path, `encrypted qcow2 images are not supported (crypt_method ${h.cryptMethod})`);

  let compression: 'deflate' | 'zstd' = 'deflate';
  if (incompat & INCOMPAT.COMPRESSION_TYPE) {
    if (compressionType === COMPRESSION.ZSTD) compression = 'zstd';
    else if (compressionType === 0) fail('E_FORMAT', path, 'compression type bit set but compression_type is 0');
    else fail('E_UNSUPPORTED', path, `unknown compression type ${compressionType}`);
  } else if (compressionType !== 0) {
    fail('E_FORMAT', path, `compression_type ${compressionType} without the compression type feature bit`);
  }
  const extendedL2 = (incompat & INCOMPAT.EXTENDED_L2) !== 0n;
  if (extendedL2 && clusterBits < EXTENDED_L2_MIN_CLUSTER_BITS) {
    fail('E_FORMAT', path, `extended L2 entries need clusters of at least ${2 ** EXTENDED_L2_MIN_CLUSTER_BITS} bytes`);
  }

  const virtualSize = num(h.size, MAX_VIRTUAL_SIZE, path, 'virtual size');
  // L1 must cover the virtual size; more entries are tolerated (qemu does) but bounded.
  const l2Entries = clusterSize / (extendedL2 ? 16 : 8);
  const needL1 = Math.ceil(Math.ceil(virtualSize / clusterSize) / l2Entries);
  if (h.l1Size < needL1) fail('E_FORMAT', path, `l1_size ${h.l1Size} too small for virtual size ${virtualSize} (need ${needL1})`, { field: 'l1Size' });
  if (h.l1Size > MAX_L1_ENTRIES) fail('E_FORMAT', path, `l1_size ${h.l1Size} exceeds ${MAX_L1_ENTRIES}`, { field: 'l1Size' });
  const l1TableOffset = num(h.l1TableOffset, MAX_HOST_OFFSET, path, 'l1_table_offset');
  if (h.l1Size > 0) checkRegion(path, 'L1 table', l1TableOffset, h.l1Size * 8, clusterSize, fileSize);

  const refcountTableOffset = num(h.refcountTableOffset, MAX_HOST_OFFSET, path, 'refcount_table_offset');
  const rtBytes = h.refcountTableClusters * clusterSize;
  if (h.refcountTableClusters === 0 || rtBytes > Math.max(MAX_REFTABLE_BYTES, clusterSize)) {
    fail('E_FORMAT', path, `bad refcount_table_clusters ${h.refcountTableClusters}`, { field: 'refcountTableClusters' });
  }
  checkRegion(path, 'refcount table', refcountTableOffset, rtBytes, clusterSize, fileSize);

  // Snapshots are not read, but a nonsense snapshot table still means a corrupt header.
  if (h.nbSnapshots > MAX_SNAPSHOTS) fail('E_FORMAT', path, `nb_snapshots ${h.nbSnapshots} exceeds ${MAX_SNAPSHOTS}`);
  if (h.nbSnapshots > 0) {
    checkRegion(path, 'snapshot table', num(h.snapshotsOffset, MAX_HOST_OFFSET, path, 'snapshots_offset'), 1, clusterSize, fileSize);
  }

  const backingFile = parseBackingName(buf, path, h.backingFileOffset, h.backingFileSize, headerLength, clusterSize);
  return {
    version, clusterBits, clusterSize, virtualSize,
    l1Size: h.l1Size, l1TableOffset, refcountTableOffset, refcountTableClusters: h.refcountTableClusters,
    extendedL2, compression, backingFile, backingFormat: backingFile === null ? null : ext.backingFormat,
  };
}

interface Extensions {
  backingFormat: string | null;
  featureNames: Map<number, string>;
  encryption: boolean;
  externalData: boolean;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function decodeName(bytes: Uint8Array, path: string, what: string): string {
  let s: string;
  try {
    s = strictUtf8.decode(bytes);
  } catch {
    fail('E_FORMAT', path, `${what} is not valid UTF-8`);
  }
  if (s.includes('\0')) fail('E_FORMAT', path, `${what} contains a NUL byte`);
  return s;
}

function parseExtensions(buf: Uint8Array, path: string, start: number, clusterSize: number, backingOffset: bigint): Extensions {
  const out: Extensions = { backingFormat: null, featureNames: new Map(), encryption: false, externalData: false };
  // Extensions live between the header and the backing name (or the end of cluster 0).
  const limit = backingOffset > 0n && backingOffset < BigInt(clusterSize) ? Number(backingOffset) : clusterSize;
  const seen = new Set<number>();
  let off = start;
  // Each step advances at least 8 bytes inside one cluster, so this terminates.
  while (off + 8 <= limit) {
    if (off + 8 > buf.length) fail('E_TRUNCATED', path, 'header extensions extend past end of file');
    const { type, length } = qcow2ExtensionHeader.parse(buf, off);
    if (type === EXT.END) return out;
    const dataEnd = off + 8 + length;
    if (dataEnd > limit) fail('E_FORMAT', path, `header extension 0x${type.toString(16)} (length ${length}) overruns the header area`);
    if (dataEnd > buf.length) fail('E_TRUNCATED', path, 'header extensions extend past end of file');
    if (seen.has(type)) fail('E_FORMAT', path, `duplicate header extension 0x${type.toString(16)}`);
    seen.add(type);
    const data = buf.subarray(off + 8, dataEnd);
    switch (type) {
      case EXT.BACKING_FORMAT:
        if (length === 0 || length > MAX_BACKING_FORMAT_NAME) fail('E_FORMAT', path, `backing format name length ${length} out of range`);
        out.backingFormat = decodeName(data, path, 'backing format name');
        break;
      case EXT.FEATURE_NAMES:
        for (let i = 0; i + FEATURE_NAME_ENTRY_SIZE <= data.length; i += FEATURE_NAME_ENTRY_SIZE) {
          if (data[i] !== 0 || data[i + 1] > 63) continue; // only incompatible names are used (for messages)
          const raw = data.subarray(i + 2, i + FEATURE_NAME_ENTRY_SIZE);
          const end = raw.indexOf(0);
          out.featureNames.set(data[i + 1], Buffer.from(raw.subarray(0, end < 0 ? raw.length : end)).toString('latin1'));
        }
        break;
      case EXT.FULL_DISK_ENCRYPTION: out.encryption = true; break;
      case EXT.EXTERNAL_DATA_FILE: out.externalData = true; break;
      default: break; // bitmaps and unknown extensions can be ignored when only reading
    }
    off += 8 + Math.ceil(length / 8) * 8;
  }
  return out;
}

function parseBackingName(buf: Uint8Array, path: string, offset: bigint, size: number, headerLength: number, clusterSize: number): string | null {
  if (offset === 0n || size === 0) return null;
  if (size > MAX_BACKING_NAME) fail('E_FORMAT', path, `backing file name length ${size} exceeds ${MAX_BACKING_NAME}`);
  const off = num(offset, clusterSize, path, 'backing_file_offset');
  if (off < headerLength || off + size > clusterSize) fail('E_FORMAT', path, `backing file name at ${off}+${size} is outside the header cluster`);
  if (off + size > buf.length) fail('E_TRUNCATED', path, 'backing file name extends past end of file');
  const name = decodeName(buf.subarray(off, off + size), path, 'backing file name');
  return name;
}
