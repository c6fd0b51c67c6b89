/** Object encoding: a single zstd frame of the uncompressed bytes, with its content size in the header. */
import { createRequire } from 'node:module';
import { compress } from 'zstd-napi';
import { sha256, type Digest } from './digest.js';
import { VmdnError } from '../errors.js';

/**
 * Objects are compressed once, at import, and then moved and stored many
 * times: on the corpus image base, level 7 stores 4.8 % fewer bytes than
 * level 3 (177.8 vs 186.7 MB) for 43 % more import CPU, and decodes as fast.
 * That is what a pull over a 100 Mbit/s link waits for, and what an archive
 * keeps. Levels above 9 cost several times more for under 1 % more.
 */
export const ZSTD_LEVEL = 7;
/** Larger objects are refused before decoding: chunks are at most 16 MiB, manifests far less than this. */
export const MAX_OBJECT_SIZE = 256 * 1024 * 1024;
type ZstdBinding = typeof import('zstd-napi/binding.js');
let zstd: ZstdBinding | undefined;
function zstdBinding(): ZstdBinding {
  // CommonJS over a native addon: named ESM imports cannot see its exports
  zstd ??= createRequire(import.meta.url)('zstd-napi/binding.js') as ZstdBinding;
  return zstd;
}

const ZSTD_MAGIC = 0xfd2fb528;
/** RFC 8878 3.1.1.2: no block regenerates more than this, whatever the window. */
const BLOCK_MAX = 128 << 10;

/** The most bytes zstd can need for `n` bytes of content (ZSTD_compressBound): bounds an encoded object on the wire. */
export function maxEncodedSize(n: number): number {
  return n + (n >>> 8) + (n < BLOCK_MAX ? (BLOCK_MAX - n) >>> 11 : 0) + 64;
}

export function encodeObject(data: Uint8Array, level = ZSTD_LEVEL): Uint8Array {
  return compress(data, { compressionLevel: level });
}

/**
 * The content size a zstd frame declares, read from its header without
 * decoding. Returns -1 when the header is malformed or the size is not declared.
 */
export function frameContentSize(f: Uint8Array): number {
  const r = frameBounds(f);
  return typeof r === 'string' ? -1 : r.contentSize;
}

/**
 * Walk the frame at the start of `f` (RFC 8878 3.1.1: header, then 3-byte
 * block headers up to the last block, then the optional checksum) without
 * decoding any block. Returns its declared content size and its length on
 * the wire, or why it is not a frame we decode.
 */
function frameBounds(f: Uint8Array): { contentSize: number; frameSize: number } | string {
  if (f.length < 6) return 'truncated frame header';
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  const magic = dv.getUint32(0, true);
  if (magic !== ZSTD_MAGIC) return (magic & 0xfffffff0) === 0x184d2a50 ? 'skippable frame' : 'not a zstd frame';
  const fhd = f[4]!;
  if (fhd & 0x08) return 'reserved frame header bit set';
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  let p = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3]!;
  const fcsLen = [single ? 1 : 0, 2, 4, 8][fcsFlag]!;
  if (fcsLen === 0) return 'content size not declared';
  if (p + fcsLen > f.length) return 'truncated frame header';
  let contentSize: number;
  if (fcsLen === 1) contentSize = f[p]!;
  else if (fcsLen === 2) contentSize = dv.getUint16(p, true) + 256;
  else if (fcsLen === 4) contentSize = dv.getUint32(p, true);
  else {
    const v = dv.getBigUint64(p, true);
    contentSize = v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  }
  p += fcsLen;
  for (;;) {
    if (p + 3 > f.length) return 'truncated block header';
    const h = f[p]! | (f[p + 1]! << 8) | (f[p + 2]! << 16);
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    p += 3;
    if (type === 3) return 'reserved block type';
    if (size > BLOCK_MAX) return `block of ${size} bytes`;
    p += type === 1 ? 1 : size; // RLE: one byte repeated `size` times
    if (h & 1) break;
  }
  if (checksum) p += 4;
  if (p > f.length) return 'truncated frame';
  return { contentSize, frameSize: p };
}

/**
 * The declared content size of `f` if it is exactly one zstd frame, declaring
 * at most `max` bytes and ending where `f` ends; else why not. Checked before
 * decoding: the decoder would go on into further frames (concatenated or
 * skippable), and grows its output without bound for a frame with no size.
 * With the size declared and a single frame, it decodes into that much room
 * and fails on a frame that holds more.
 */
export function singleFrameSize(f: Uint8Array, max: number): number | string {
  const r = frameBounds(f);
  if (typeof r === 'string') return r;
  if (r.frameSize !== f.length) return `${f.length - r.frameSize} bytes after the frame`;
  if (r.contentSize > max) return `declares ${r.contentSize} bytes, more than ${max}`;
  return r.contentSize;
}

/**
 * One decompression context per thread (module instances are per worker),
 * called straight through the binding: zstd-napi's decompress() allocates a
 * fresh output buffer per frame, which for ~32 KiB objects cost as much CPU
 * as the decoding itself.
 */
let dctx: InstanceType<ZstdBinding['DCtx']> | undefined;

/** Decode and verify; throws E_CORRUPT_OBJECT on a bad frame, an oversized claim or a hash mismatch. */
export function decodeObject(digest: Digest, encoded: Uint8Array, source = 'store'): Uint8Array {
  const claimed = checkFrame(digest, encoded, source, MAX_OBJECT_SIZE);
  const out = Buffer.allocUnsafe(claimed);
  decodeInto(digest, encoded, out, source);
  return out;
}

/**
 * decodeObject into the caller's buffer (reused scratch, or its place in a
 * larger run): `dest` must be exactly `expected` bytes long, and an object
 * that declares another size is refused before decoding. Returns its size.
 */
export function decodeObjectInto(digest: Digest, encoded: Uint8Array, dest: Uint8Array, source = 'store'): number {
  const claimed = checkFrame(digest, encoded, source, MAX_OBJECT_SIZE);
  if (claimed !== dest.length) {
    throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${claimed} bytes, expected ${dest.length}`, { digest, source });
  }
  decodeInto(digest, encoded, dest, source);
  return claimed;
}

function checkFrame(digest: Digest, encoded: Uint8Array, source: string, max: number): number {
  const claimed = singleFrameSize(encoded, max);
  if (typeof claimed === 'string') {
    throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} from ${source}: bad zstd frame (${claimed})`, { digest, source });
  }
  return claimed;
}

/** Decode a checked frame into exactly its declared size, then verify the hash. */
function decodeInto(digest: Digest, encoded: Uint8Array, dest: Uint8Array, source: string): void {
  let n: number;
  try {
    dctx ??= new (zstdBinding().DCtx)();
    n = dctx.decompress(dest, encoded);
  } catch (err) {
    // a failed call leaves the context mid-frame: the next one starts from a fresh one
    dctx = undefined;
    throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} from ${source}: undecodable (${(err as Error).message})`, { digest, source }, { cause: err });
  }
  if (n !== dest.length) {
    throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} from ${source}: undecodable (${n} bytes, frame declares ${dest.length})`, { digest, source });
  }
  const actual = sha256(dest);
  if (actual !== digest) {
    throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} from ${source}: hash mismatch (got ${actual.slice(0, 12)})`, { digest, actual, source });
  }
}
