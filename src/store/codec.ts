/** Object encoding: a single zstd frame of the uncompressed bytes, with its content size in the header. */
import { compress, decompress } from 'zstd-napi';
import { sha256, type Digest } from './digest.js';
import { VmdnError } from '../errors.js';

export const ZSTD_LEVEL = 3;
/** Larger objects are refused before decoding: chunks are at most 16 MiB, manifests far less than this. */
export const MAX_OBJECT_SIZE = 256 * 1024 * 1024;
const ZSTD_MAGIC = 0xfd2fb528;

export function encodeObject(data: Uint8Array, level = ZSTD_LEVEL): Uint8Array {
  return compress(data, { compressionLevel: level });
}

/**
 * The decompressed size a zstd frame declares, read from its header without
 * decoding, so a hostile frame cannot make us allocate more than MAX_OBJECT_SIZE.
 * Returns -1 when the header is malformed or the size is not declared.
 */
export function frameContentSize(f: Uint8Array): number {
  if (f.length < 6) return -1;
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  if (dv.getUint32(0, true) !== ZSTD_MAGIC) return -1;
  const fhd = f[4]!;
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const dictFlag = fhd & 3;
  let p = 5 + (single ? 0 : 1) + [0, 1, 2, 4][dictFlag]!;
  const fcsLen = [single ? 1 : 0, 2, 4, 8][fcsFlag]!;
  if (fcsLen === 0 || p + fcsLen > f.length) return -1;
  switch (fcsLen) {
    case 1: return f[p]!;
    case 2: return dv.getUint16(p, true) + 256;
    case 4: return dv.getUint32(p, true);
    default: {
      const v = dv.getBigUint64(p, true);
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    }
  }
}

/** Decode and verify; throws E_CORRUPT_OBJECT on a bad frame, an oversized claim or a hash mismatch. */
export function decodeObject(digest: Digest, encoded: Uint8Array, source = 'store'): Uint8Array {
  const claimed = frameContentSize(encoded);
  if (claimed < 0 || claimed > MAX_OBJECT_SIZE) {
    throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} from ${source}: bad zstd frame header`, { digest, source });
  }
  let data: Uint8Array;
  try {
    data = decompress(encoded);
  } catch (err) {
    throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} from ${source}: undecodable (${(err as Error).message})`, { digest, source }, { cause: err });
  }
  const actual = sha256(data);
  if (actual !== digest) {
    throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} from ${source}: hash mismatch (got ${actual.slice(0, 12)})`, { digest, actual, source });
  }
  return data;
}
