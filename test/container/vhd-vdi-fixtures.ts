/**
 * Images for the VHD and VDI tests, all made by qemu-img/qemu-io: a raw
 * source with random data written by qemu-io at scattered offsets (one write
 * straddles a 2 MiB VHD block and a 1 MiB VDI block), its conversions to every
 * subformat, and a differencing VHD (qemu cannot create one: a qemu dynamic
 * VHD gets its footer type, parent id, name and relative locator patched in,
 * checksums recomputed here, independently of the reader).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { prng } from '../helpers/images.js';

const exec = promisify(execFile);
export const MiB = 1 << 20;
export const SIZE = 6 * MiB;

export async function qemuImg(...args: string[]): Promise<string> {
  return (await exec('qemu-img', args, { maxBuffer: 64 * MiB })).stdout;
}

export async function qemuIo(format: string, file: string, ...cmds: string[]): Promise<void> {
  await exec('qemu-io', ['-f', format, ...cmds.flatMap((c) => ['-c', c]), file]);
}

/** Scattered writes: [offset, length]. */
export const WRITES: Array<[number, number]> = [[0, 64 << 10], [MiB + 512, 100 << 10], [2 * MiB - 4096, 8192], [3.5 * MiB, 300 << 10], [SIZE - 4096, 4096]];

/** Random-data writes by qemu-io into `file` of `format`, each from its own seeded file in `dir`. */
export async function writeRandom(dir: string, format: string, file: string, seed = 1, writes = WRITES): Promise<void> {
  const cmds: string[] = [];
  for (const [i, [off, len]] of writes.entries()) {
    const src = path.join(dir, `rand-${seed}-${i}.bin`);
    await fs.writeFile(src, prng(seed * 100 + i, len));
    cmds.push(`write -s ${src} ${off} ${len}`);
  }
  await qemuIo(format, file, ...cmds);
}

export interface Images {
  raw: string;
  vhdFixed: string;
  vhdDynamic: string;
  vdiStatic: string;
  vdiDynamic: string;
}

export async function makeImages(dir: string): Promise<Images> {
  const at = (n: string) => path.join(dir, n);
  await qemuImg('create', '-f', 'raw', at('src.raw'), String(SIZE));
  await writeRandom(dir, 'raw', at('src.raw'));
  await qemuImg('convert', '-O', 'vpc', '-o', 'subformat=fixed', at('src.raw'), at('fixed.vhd'));
  await qemuImg('convert', '-O', 'vpc', '-o', 'subformat=dynamic', at('src.raw'), at('dynamic.vhd'));
  await qemuImg('convert', '-O', 'vdi', '-o', 'static=on', at('src.raw'), at('static.vdi'));
  await qemuImg('convert', '-O', 'vdi', at('src.raw'), at('dynamic.vdi'));
  return { raw: at('src.raw'), vhdFixed: at('fixed.vhd'), vhdDynamic: at('dynamic.vhd'), vdiStatic: at('static.vdi'), vdiDynamic: at('dynamic.vdi') };
}

/** The VHD checksum, written out here so the tests do not lean on the reader's. */
export function vhdSum(b: Buffer, start: number, len: number, checksumAt: number): number {
  let s = 0;
  for (let i = start; i < start + len; i++) if (i < start + checksumAt || i >= start + checksumAt + 4) s += b[i];
  return ~s >>> 0;
}

/** Recompute both footers' and the dynamic header's checksums of a VHD held in `b`. */
export function fixVhdChecksums(b: Buffer): void {
  // a mutant cut shorter than a footer has no checksum to fix (npm run fuzz, seed 2492106773: a RangeError in the harness)
  if (b.length < 512) return;
  for (const at of [0, b.length - 512]) if (b.toString('latin1', at, at + 8) === 'conectix') b.writeUInt32BE(vhdSum(b, at, 512, 64), at + 64);
  if (b.toString('latin1', 0, 8) === 'conectix') {
    const dyn = Number(b.readBigUInt64BE(16));
    if (dyn + 1024 <= b.length && b.toString('latin1', dyn, dyn + 8) === 'cxsparse') b.writeUInt32BE(vhdSum(b, dyn, 1024, 36), dyn + 36);
  }
}

/** Patch a field of both footers (start copy and end) of a VHD in `b`. */
export function patchFooters(b: Buffer, edit: (b: Buffer, at: number) => void): void {
  for (const at of [0, b.length - 512]) if (b.toString('latin1', at, at + 8) === 'conectix') edit(b, at);
}

export const dynOffset = (b: Buffer): number => Number(b.readBigUInt64BE(16));
export const batOffset = (b: Buffer): number => Number(b.readBigUInt64BE(dynOffset(b) + 16));

/**
 * Turn the dynamic VHD `child` into a differencing disk of `parent` (file
 * name `parentName`, relative locator `locator` unless null): footer type 4,
 * parent unique id, UTF-16BE name, and a W2ru locator whose UTF-16LE text sits
 * in the dynamic header's reserved tail (inside the file, before the BAT).
 */
export async function makeDifferencing(child: string, parent: string, parentName: string, locator: string | null = `.\\${parentName}`): Promise<void> {
  const b = await fs.readFile(child);
  const p = await fs.readFile(parent);
  const parentId = p.subarray(p.length - 512 + 68, p.length - 512 + 84);
  patchFooters(b, (x, at) => x.writeUInt32BE(4, at + 60));
  const dyn = dynOffset(b);
  parentId.copy(b, dyn + 40);
  b.fill(0, dyn + 64, dyn + 64 + 512);
  Buffer.from(parentName, 'utf16le').swap16().copy(b, dyn + 64);
  b.fill(0, dyn + 576, dyn + 1024);
  if (locator !== null) {
    const text = Buffer.from(locator, 'utf16le');
    const dataAt = dyn + 768;
    text.copy(b, dataAt);
    b.writeUInt32BE(0x57327275, dyn + 576); // 'W2ru'
    b.writeUInt32BE(1, dyn + 576 + 4);
    b.writeUInt32BE(text.length, dyn + 576 + 8);
    b.writeBigUInt64BE(BigInt(dataAt), dyn + 576 + 16);
  }
  fixVhdChecksums(b);
  await fs.writeFile(child, b);
}

/** Guest ranges qemu reports as data in `file` (`qemu-img map`). */
export async function mappedData(file: string, format: string): Promise<Array<[number, number]>> {
  const map = JSON.parse(await qemuImg('map', '--output=json', '-f', format, file)) as Array<{ start: number; length: number; data: boolean }>;
  return map.filter((m) => m.data).map((m) => [m.start, m.length]);
}

export async function rawOf(file: string, format: string): Promise<Buffer> {
  const out = `${file}.ref.raw`;
  await qemuImg('convert', '-f', format, '-O', 'raw', file, out);
  try {
    return await fs.readFile(out);
  } finally {
    await fs.rm(out, { force: true });
  }
}
