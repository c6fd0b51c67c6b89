/**
 * CRC32C (Castagnoli), as ext4 uses it: the raw register update with no
 * pre/post inversion, so callers chain it exactly like the kernel's
 * ext4_chksum(seed, data). Slice-by-4 tables: metadata only, but inodes are
 * checksummed on every stat, so a little speed is worth 4 KiB of tables.
 */
const T = (() => {
  const t = new Uint32Array(4 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 4; s++) t[s * 256 + i] = (t[(s - 1) * 256 + i] >>> 8) ^ t[t[(s - 1) * 256 + i] & 0xff];
  }
  return t;
})();

/** Kernel-style crc32c(crc, data): no inversion in or out. */
export function crc32cRaw(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  let c = crc >>> 0;
  let i = start;
  for (; i + 4 <= end; i += 4) {
    c ^= data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
    c = T[768 + (c & 0xff)] ^ T[512 + ((c >>> 8) & 0xff)] ^ T[256 + ((c >>> 16) & 0xff)] ^ T[c >>> 24];
  }
  for (; i < end; i++) c = T[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** Standard CRC-32C (inverted in and out), e.g. crc32c("123456789") = 0xe3069283. */
export function crc32c(data: Uint8Array): number {
  return ~crc32cRaw(0xffffffff, data) >>> 0;
}

/** crc32c over a little-endian u32 (inode numbers, generations, group numbers). */
export function crc32cU32(crc: number, v: number): number {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return crc32cRaw(crc, b);
}

/** crc32c over a little-endian u64 (xattr block numbers). */
export function crc32cU64(crc: number, v: number): number {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return crc32cRaw(crc, b);
}
