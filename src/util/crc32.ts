/**
 * CRC-32 (IEEE 802.3, as used by GPT and zlib). Node has `zlib.crc32` only
 * from 20.15 / 22.2; the engines field allows any 20.x, so keep a table-based
 * fallback and pick once at load.
 */
import zlib from 'node:zlib';

let table: Uint32Array | undefined;

function tableCrc32(data: Uint8Array, crc = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const native = (zlib as unknown as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;

/** CRC-32 of `data`, optionally continuing from a previous value. */
export const crc32: (data: Uint8Array, crc?: number) => number =
  typeof native === 'function' ? (d, c = 0) => native(d, c) >>> 0 : tableCrc32;

/** Exposed so the fallback can be tested against the native one. */
export const crc32Fallback = tableCrc32;
