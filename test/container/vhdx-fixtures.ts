/**
 * Images for the VHDX tests, made by qemu-img/qemu-io (1 MiB blocks, 6 MiB
 * disks, random data written at scattered offsets), and byte-level editors
 * written here independently of the reader: CRC-32C (bitwise), the current
 * header, the region table, the metadata table, the BAT. qemu cannot make a
 * differencing VHDX (it refuses images with a parent), so one is patched from
 * a qemu dynamic image (its ZERO blocks made NOT_PRESENT); nor a dirty log on demand, so log entries are built
 * here (and `qemu-img check -r all`, which replays a log, confirms them).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { qemuImg, writeRandom, MiB } from './vhd-vdi-fixtures.js';

export { qemuImg, writeRandom, MiB };
export const SIZE = 6 * MiB;
export const WRITES: Array<[number, number]> = [[0, 64 << 10], [MiB + 512, 100 << 10], [2 * MiB - 4096, 8192], [3.5 * MiB, 300 << 10], [SIZE - 4096, 4096]];

/** Bitwise CRC-32C (no table: a second implementation, not the reader's). */
export function crc32c(b: Uint8Array, skipAt = -1): number {
  let c = ~0;
  for (let i = 0; i < b.length; i++) {
    c ^= skipAt >= 0 && i >= skipAt && i < skipAt + 4 ? 0 : b[i];
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}
export function fixCrc(b: Buffer, at: number, len: number): void {
  b.writeUInt32LE(crc32c(b.subarray(at, at + len), 4), at + 4);
}

export const HEADERS = [64 << 10, 128 << 10];
export const REGION_TABLES = [192 << 10, 256 << 10];
/** Offset of the current header (valid, higher sequence number). */
export function curHeader(b: Buffer): number {
  const ok = HEADERS.filter((h) => b.readUInt32LE(h) === 0x64616568 && crc32c(b.subarray(h, h + 4096), 4) === b.readUInt32LE(h + 4));
  return ok.reduce((a, h) => (b.readBigUInt64LE(h + 8) > b.readBigUInt64LE(a + 8) ? h : a));
}
export function fixHeaders(b: Buffer): void {
  for (const h of HEADERS) fixCrc(b, h, 4096);
}
export function fixRegionTables(b: Buffer): void {
  for (const r of REGION_TABLES) fixCrc(b, r, 64 << 10);
}

const BAT_GUID = '6677c22d23f600429d64115e9bfd4a08';
const META_GUID = '06a27c8b90479a4bb8fe575f050f886e';
/** [entry offset in the file, region offset, length] of the BAT or metadata region in region table 1. */
export function region(b: Buffer, which: 'bat' | 'meta'): { entry: number; offset: number; length: number } {
  const rt = REGION_TABLES[0];
  for (let i = 0; i < b.readUInt32LE(rt + 8); i++) {
    const e = rt + 16 + i * 32;
    if (b.toString('hex', e, e + 16) === (which === 'bat' ? BAT_GUID : META_GUID)) return { entry: e, offset: Number(b.readBigUInt64LE(e + 16)), length: b.readUInt32LE(e + 24) };
  }
  throw new Error(`no ${which} region`);
}

const ITEM = {
  params: '3767a1ca36fa434db3b633f0aa44e76b',
  size: '2442a52f1bcd7648b2115dbed83bf4b8',
  logical: '1dbf41816fa90947ba47f233a8faab5f',
  locator: '2d5fd3a80bb34d45abf7d3d84834ab0c',
};
/** File offset of the metadata table entry for `item`. */
export function metaEntry(b: Buffer, item: keyof typeof ITEM): number {
  const m = region(b, 'meta').offset;
  for (let i = 0; i < b.readUInt16LE(m + 10); i++) if (b.toString('hex', m + 32 + i * 32, m + 48 + i * 32) === ITEM[item]) return m + 32 + i * 32;
  throw new Error(`no metadata item ${item}`);
}
/** File offset of metadata item `item`'s data. */
export const metaData = (b: Buffer, item: keyof typeof ITEM): number => region(b, 'meta').offset + b.readUInt32LE(metaEntry(b, item) + 16);

/** BAT entry index of payload block `blk` (1 MiB blocks, 512-byte sectors: chunk ratio 4096). */
export const batAt = (b: Buffer, blk: number): number => region(b, 'bat').offset + (blk + Math.floor(blk / 4096)) * 8;
export const blockOffset = (b: Buffer, blk: number): number => Number(b.readBigUInt64LE(batAt(b, blk)) >> 20n) * MiB;

export interface VhdxImages { raw: string; dynamic: string; fixed: string }

export async function makeVhdxImages(dir: string): Promise<VhdxImages> {
  const at = (n: string): string => path.join(dir, n);
  await qemuImg('create', '-f', 'vhdx', '-o', 'block_size=1M', at('dynamic.vhdx'), String(SIZE));
  await qemuImg('create', '-f', 'vhdx', '-o', 'subformat=fixed,block_size=1M', at('fixed.vhdx'), String(SIZE));
  for (const f of ['dynamic.vhdx', 'fixed.vhdx']) await writeRandom(dir, 'vhdx', at(f), 21, WRITES);
  await qemuImg('convert', '-f', 'vhdx', '-O', 'raw', at('dynamic.vhdx'), at('src.raw'));
  return { raw: at('src.raw'), dynamic: at('dynamic.vhdx'), fixed: at('fixed.vhdx') };
}

/** The "{XXXXXXXX-...}" spelling of the current data write GUID of the VHDX in `b`. */
export function dataWriteGuid(b: Buffer): string {
  const g = b.subarray(curHeader(b) + 32, curHeader(b) + 48);
  const rev = (s: number, e: number): string => Buffer.from(g.subarray(s, e)).reverse().toString('hex');
  return `{${rev(0, 4)}-${rev(4, 6)}-${rev(6, 8)}-${g.toString('hex', 8, 10)}-${g.toString('hex', 10, 16)}}`.toUpperCase();
}

/**
 * Turn the dynamic VHDX `child` into a differencing disk of `parent`: the
 * has-parent flag, a parent locator item (VHDX type; parent_linkage and
 * relative_path, unless null) at 512 KiB into the metadata region.
 */
export async function makeDifferencing(child: string, parent: string, relativePath: string | null, linkage?: string): Promise<void> {
  const b = await fs.readFile(child);
  const link = linkage ?? dataWriteGuid(await fs.readFile(parent));
  b.writeUInt32LE(b.readUInt32LE(metaData(b, 'params') + 4) | 2, metaData(b, 'params') + 4);
  // qemu marks the blocks it has not written ZERO; in a differencing disk that would hide the parent
  for (let blk = 0; blk < SIZE / MiB; blk++) if ((b.readBigUInt64LE(batAt(b, blk)) & 7n) === 2n) b.writeBigUInt64LE(0n, batAt(b, blk));
  const m = region(b, 'meta').offset;
  const count = b.readUInt16LE(m + 10);
  const kv: Array<[string, string]> = [['parent_linkage', link]];
  if (relativePath !== null) kv.push(['relative_path', relativePath]);
  const loc = Buffer.alloc(4096);
  Buffer.from('b7ef4ab09ed1814ab78925b8e9445913', 'hex').copy(loc, 0);
  loc.writeUInt16LE(kv.length, 18);
  let text = 20 + kv.length * 12;
  for (const [i, [k, v]] of kv.entries()) {
    const kb = Buffer.from(k, 'utf16le'), vb = Buffer.from(v, 'utf16le');
    loc.writeUInt32LE(text, 20 + i * 12); kb.copy(loc, text); text += kb.length;
    loc.writeUInt32LE(text, 24 + i * 12); vb.copy(loc, text); text += vb.length;
    loc.writeUInt16LE(kb.length, 28 + i * 12);
    loc.writeUInt16LE(vb.length, 30 + i * 12);
  }
  const itemAt = 512 << 10;
  loc.copy(b, m + itemAt);
  const e = m + 32 + count * 32;
  Buffer.from(ITEM.locator, 'hex').copy(b, e);
  b.writeUInt32LE(itemAt, e + 16);
  b.writeUInt32LE(text, e + 20);
  b.writeUInt32LE(4 | 2, e + 24);
  b.writeUInt16LE(count + 1, m + 10);
  await fs.writeFile(child, b);
}

export interface LogWrite { kind: 'data'; fileOffset: number; data: Buffer }
export interface LogZero { kind: 'zero'; fileOffset: number; length: number }

/**
 * One log entry (header, descriptors, data sectors) of sequence `seq` for
 * `logGuid`, to sit at `tail` in the log, CRC-32C filled in.
 */
export function logEntry(seq: bigint, logGuid: Buffer, ops: Array<LogWrite | LogZero>, fileSize: number, tail = 0): Buffer {
  const descSectors = Math.ceil((64 + ops.length * 32) / 4096);
  const data = ops.filter((o): o is LogWrite => o.kind === 'data');
  const e = Buffer.alloc((descSectors + data.length) * 4096);
  e.writeUInt32LE(0x65676f6c, 0);
  e.writeUInt32LE(e.length, 8);
  e.writeUInt32LE(tail, 12);
  e.writeBigUInt64LE(seq, 16);
  e.writeUInt32LE(ops.length, 24);
  logGuid.copy(e, 32);
  e.writeBigUInt64LE(BigInt(fileSize), 48);
  e.writeBigUInt64LE(BigInt(fileSize), 56);
  let sector = descSectors;
  for (const [i, o] of ops.entries()) {
    const d = 64 + i * 32;
    e.writeBigUInt64LE(BigInt(o.fileOffset), d + 16);
    e.writeBigUInt64LE(seq, d + 24);
    if (o.kind === 'zero') {
      e.writeUInt32LE(0x6f72657a, d);
      e.writeBigUInt64LE(BigInt(o.length), d + 8);
    } else {
      e.writeUInt32LE(0x63736564, d);
      o.data.copy(e, d + 4, 4092, 4096); // trailing bytes
      o.data.copy(e, d + 8, 0, 8); // leading bytes
      const s = sector++ * 4096;
      e.writeUInt32LE(0x61746164, s);
      e.writeUInt32LE(Number(seq >> 32n), s + 4);
      o.data.copy(e, s + 8, 8, 4092);
      e.writeUInt32LE(Number(seq & 0xffffffffn), s + 4092);
    }
  }
  fixCrc(e, 0, e.length);
  return e;
}

/** Put `entries` into the log of the VHDX in `b` (at their offsets in the log) and name `logGuid` in the current header. */
export function dirty(b: Buffer, logGuid: Buffer, entries: Array<[number, Buffer]>): void {
  const h = curHeader(b);
  const logAt = Number(b.readBigUInt64LE(h + 72));
  for (const [off, e] of entries) e.copy(b, logAt + off);
  logGuid.copy(b, h + 48);
  b.writeUInt16LE(0, h + 64); // log version 0
  fixCrc(b, h, 4096);
}
