/** Writing the ustar headers of an OVA: regular files at the top level, sizes past 8 GiB in GNU base-256. */
import { TAR_BLOCK } from './tar.js';

function putStr(h: Buffer, at: number, len: number, s: string): void {
  const b = Buffer.from(s, 'utf8');
  b.copy(h, at, 0, Math.min(len, b.length));
}

function putOctal(h: Buffer, at: number, len: number, n: number): void {
  putStr(h, at, len, `${n.toString(8).padStart(len - 1, '0')}\0`);
}

/** The 512-byte header of regular file `name` (at most 100 bytes) of `size` bytes. */
export function tarHeader(name: string, size: number, mtime = Math.floor(Date.now() / 1000)): Buffer {
  const h = Buffer.alloc(TAR_BLOCK);
  if (Buffer.byteLength(name) > 100) throw new RangeError(`tar member name too long: ${name}`);
  putStr(h, 0, 100, name);
  putOctal(h, 100, 8, 0o644);
  putOctal(h, 108, 8, 0);
  putOctal(h, 116, 8, 0);
  if (size < 8 ** 11) putOctal(h, 124, 12, size);
  else {
    // GNU base-256: high bit set, big-endian value in the rest of the field
    h[124] = 0x80;
    let n = size;
    for (let i = 135; i > 124; i--, n = Math.floor(n / 256)) h[i] = n % 256;
  }
  putOctal(h, 136, 12, mtime);
  h.fill(0x20, 148, 156);
  h[156] = 0x30; // '0': regular file
  putStr(h, 257, 6, 'ustar\0');
  putStr(h, 263, 2, '00');
  let sum = 0;
  for (const b of h) sum += b;
  putStr(h, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return h;
}

/** Zero bytes that pad a member of `size` bytes to a whole block. */
export const tarPadding = (size: number): Buffer => Buffer.alloc((TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK);

/** The end of an archive: two zero blocks. */
export const tarEnd = (): Buffer => Buffer.alloc(2 * TAR_BLOCK);
