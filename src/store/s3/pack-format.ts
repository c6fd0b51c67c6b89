/**
 * Pack indexes (docs/format.md, "S3 store", version 1): a pack object is
 * encoded objects back to back; its index object lists where each is.
 *   magic "VMDNPX1\n" | u32 count | u32 reserved (0) | u64 pack size
 *   count x { 32-byte digest | u64 offset | u32 stored length | u32 size }
 * All little-endian. Parsed with every field checked against the pack's size.
 */
import { VmdnError } from '../../errors.js';
import { MAX_OBJECT_SIZE, maxEncodedSize } from '../codec.js';
import type { Digest } from '../digest.js';

export interface PackEntry { digest: Digest; offset: number; stored: number; size: number }

const MAGIC = Buffer.from('VMDNPX1\n');
const HEAD = 24;
const ENTRY = 48;
/** Far above the ~16 MiB packs vmdn writes, far below what breaks offsets. */
export const MAX_PACK_SIZE = 4 * 2 ** 30;

export function encodePackIndex(entries: PackEntry[], packSize: number): Buffer {
  const b = Buffer.alloc(HEAD + ENTRY * entries.length);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(entries.length, 8);
  b.writeBigUInt64LE(BigInt(packSize), 16);
  entries.forEach((e, i) => {
    const p = HEAD + ENTRY * i;
    b.write(e.digest, p, 'hex');
    b.writeBigUInt64LE(BigInt(e.offset), p + 32);
    b.writeUInt32LE(e.stored, p + 40);
    b.writeUInt32LE(e.size, p + 44);
  });
  return b;
}

export function decodePackIndex(bytes: Uint8Array, where: string): { entries: PackEntry[]; packSize: number } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (why: string) => new VmdnError('E_FORMAT', `pack index ${where}: ${why}`, { where });
  if (b.length < HEAD || !b.subarray(0, 8).equals(MAGIC)) throw bad('not a vmdn pack index (v1)');
  const count = b.readUInt32LE(8);
  if (b.readUInt32LE(12) !== 0) throw bad('reserved field set');
  if (b.length !== HEAD + ENTRY * count) throw bad(`${b.length} bytes for ${count} entries`);
  const big = b.readBigUInt64LE(16);
  if (big > BigInt(MAX_PACK_SIZE)) throw bad('pack size out of range');
  const packSize = Number(big);
  const entries: PackEntry[] = [];
  for (let i = 0; i < count; i++) {
    const p = HEAD + ENTRY * i;
    const off = b.readBigUInt64LE(p + 32);
    const stored = b.readUInt32LE(p + 40);
    const size = b.readUInt32LE(p + 44);
    if (off > BigInt(packSize) || Number(off) + stored > packSize) throw bad(`entry ${i} beyond the pack`);
    if (stored === 0 || size > MAX_OBJECT_SIZE || stored > maxEncodedSize(size)) throw bad(`entry ${i}: sizes out of range`);
    entries.push({ digest: b.toString('hex', p, p + 32), offset: Number(off), stored, size });
  }
  return { entries, packSize };
}
