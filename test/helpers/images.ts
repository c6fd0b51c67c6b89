/** Small synthetic disks from a seeded PRNG: data at scattered offsets, zero runs, holes. */
import fs from 'node:fs';

export function prng(seed: number, size: number): Buffer {
  const b = Buffer.alloc(size + 3);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b.subarray(0, size);
}

export interface Piece {
  offset: number;
  data: Buffer;
}

/** A sparse raw file of `size` bytes holding `pieces`. */
export function writeRaw(file: string, size: number, pieces: Piece[]): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, size);
    for (const p of pieces) fs.writeSync(fd, p.data, 0, p.data.length, p.offset);
  } finally {
    fs.closeSync(fd);
  }
}

const MiB = 1024 * 1024;

/** A 64 MiB disk: random data, a zero run inside data, text, unaligned bits, data in the last sector. */
export function sampleDisk(file: string, seed = 1, size = 64 * MiB + 4608): void {
  writeRaw(file, size, [
    { offset: 0, data: prng(seed, 512 * 1024) },
    { offset: 3 * MiB, data: Buffer.concat([prng(seed + 1, 700 * 1024), Buffer.alloc(300 * 1024), prng(seed + 2, 333 * 1024 + 17)]) },
    { offset: 10 * MiB + 123, data: Buffer.from('hello vmdn\n'.repeat(5000)) },
    { offset: 40 * MiB, data: prng(seed + 3, 2 * MiB) },
    { offset: 50 * MiB, data: prng(seed + 3, 2 * MiB) }, // duplicate content: dedups within the image
    { offset: size - 1000, data: prng(seed + 4, 1000) },
  ]);
}
