/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), which VHDX uses for
 * its headers, region tables and log entries. Node's zlib.crc32 is the other
 * polynomial, so a small table-driven one lives here.
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C of `buf`, with the 4 bytes at `skipAt` (a checksum field) counted as zeros. */
export function crc32c(buf: Uint8Array, skipAt = -1): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) {
    const b = skipAt >= 0 && i >= skipAt && i < skipAt + 4 ? 0 : buf[i];
    c = TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** Compute and store the checksum of `buf` at `at` (little-endian). */
export function setCrc32c(buf: Uint8Array, at: number): void {
  new DataView(buf.buffer, buf.byteOffset, buf.length).setUint32(at, crc32c(buf, at), true);
}

if (crc32c(new TextEncoder().encode('123456789')) !== 0xe3069283) throw new Error('crc32c self-test failed');
