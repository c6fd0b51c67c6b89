/**
 * FAT directory entries: 8.3 short entries, VFAT long-name (LFN) entries
 * that precede them (checked by sequence number and short-name checksum), and
 * the DOS date/time encoding. Pure functions over bytes already read.
 */
import { defineStruct } from '../../util/struct.js';
import type { Timestamp } from '../types.js';

export const DirEntryStruct = defineStruct('fat-dirent', 32, 'le', [
  { name: 'name', type: 'bytes:11', offset: 0 },
  { name: 'attr', type: 'u8', offset: 11 },
  { name: 'ntCase', type: 'u8', offset: 12 },
  { name: 'crtTenths', type: 'u8', offset: 13 },
  { name: 'crtTime', type: 'u16', offset: 14 },
  { name: 'crtDate', type: 'u16', offset: 16 },
  { name: 'accDate', type: 'u16', offset: 18 },
  { name: 'clusterHi', type: 'u16', offset: 20 },
  { name: 'wrtTime', type: 'u16', offset: 22 },
  { name: 'wrtDate', type: 'u16', offset: 24 },
  { name: 'clusterLo', type: 'u16', offset: 26 },
  { name: 'size', type: 'u32', offset: 28 },
] as const);

export const LfnStruct = defineStruct('fat-lfn', 32, 'le', [
  { name: 'ord', type: 'u8', offset: 0 },
  { name: 'name1', type: 'bytes:10', offset: 1 },
  { name: 'attr', type: 'u8', offset: 11 },
  { name: 'type', type: 'u8', offset: 12 },
  { name: 'checksum', type: 'u8', offset: 13 },
  { name: 'name2', type: 'bytes:12', offset: 14 },
  { name: 'clusterLo', type: 'u16', offset: 26 },
  { name: 'name3', type: 'bytes:4', offset: 28 },
] as const);

export const ATTR_READONLY = 0x01;
export const ATTR_VOLUME = 0x08;
export const ATTR_DIR = 0x10;
export const ATTR_LFN = 0x0f;

export type RawDirEntry = ReturnType<typeof DirEntryStruct.parse>;

export interface FatDirent {
  name: string;
  shortName: string;
  entry: RawDirEntry;
  /** Device byte offset of the short entry (the node's identity). */
  entryOffset: number;
  firstCluster: number;
}

/** DOS date+time (local time, treated as UTC) to seconds since the epoch; date 0 means "not set". */
export function fatTime(date: number, time: number, tenths = 0): Timestamp {
  if (date === 0) return { sec: 0, nsec: 0 };
  const ms = Date.UTC(1980 + (date >> 9), ((date >> 5) & 15) - 1, date & 31, time >> 11, (time >> 5) & 63, (time & 31) * 2);
  const t = Math.min(tenths, 199);
  return { sec: Math.floor(ms / 1000) + Math.floor(t / 100), nsec: (t % 100) * 10_000_000 };
}

export function lfnChecksum(short11: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = (((sum & 1) << 7) + (sum >> 1) + short11[i]) & 0xff;
  return sum;
}

/** 8.3 name for display; honours the NT lower-case flags Linux and mtools use. */
export function shortName(e: RawDirEntry): string {
  const raw = Uint8Array.from(e.name);
  if (raw[0] === 0x05) raw[0] = 0xe5;
  let base = Buffer.from(raw.subarray(0, 8)).toString('latin1').replace(/ +$/, '');
  let ext = Buffer.from(raw.subarray(8, 11)).toString('latin1').replace(/ +$/, '');
  if (e.ntCase & 0x08) base = base.toLowerCase();
  if (e.ntCase & 0x10) ext = ext.toLowerCase();
  return ext ? `${base}.${ext}` : base;
}

function lfnChars(b: Uint8Array, at: number): number[] {
  const l = LfnStruct.parse(b, at);
  const out: number[] = [];
  for (const part of [l.name1, l.name2, l.name3]) {
    for (let i = 0; i < part.length; i += 2) out.push(part[i] | (part[i + 1] << 8));
  }
  return out;
}

function decodeLfn(units: number[]): string {
  const end = units.indexOf(0);
  const u = end < 0 ? units : units.slice(0, end);
  return Buffer.from(Uint16Array.from(u).buffer).toString('utf16le');
}

/**
 * Parse a directory's bytes. `devOffset(i)` maps a byte index in `buf` to its
 * device offset. Volume labels are returned separately; deleted entries,
 * '.' and '..' are skipped. Broken LFN runs fall back to the short name.
 */
export function parseDir(buf: Uint8Array, devOffset: (i: number) => number, fatType: number, warnings: string[]): { entries: FatDirent[]; label?: string } {
  const entries: FatDirent[] = [];
  let label: string | undefined;
  let lfn: { parts: number[][]; next: number; checksum: number } | undefined;
  for (let i = 0; i + 32 <= buf.length; i += 32) {
    const first = buf[i];
    if (first === 0x00) break;
    const attr = buf[i + 11];
    if (first === 0xe5) { lfn = undefined; continue; }
    if ((attr & 0x3f) === ATTR_LFN) {
      const ord = first & 0x3f;
      if (first & 0x40) {
        lfn = ord >= 1 && ord <= 20 ? { parts: [], next: ord, checksum: buf[i + 13] } : undefined;
      } else if (!lfn || ord !== lfn.next || buf[i + 13] !== lfn.checksum) {
        if (lfn) warnings.push(`LFN entry out of sequence at device offset ${devOffset(i)}`);
        lfn = undefined;
        continue;
      }
      if (lfn) { lfn.parts[ord - 1] = lfnChars(buf, i); lfn.next = ord - 1; }
      continue;
    }
    const e = DirEntryStruct.parse(buf, i);
    let name = shortName(e);
    if (lfn) {
      if (lfn.next === 0 && lfnChecksum(e.name) === lfn.checksum) name = decodeLfn(lfn.parts.flat());
      else warnings.push(`long name for ${name} is incomplete or has a bad checksum; using the short name`);
      lfn = undefined;
    }
    if (attr & ATTR_VOLUME) {
      if (!(attr & ATTR_DIR)) label ??= Buffer.from(e.name).toString('latin1').replace(/ +$/, '');
      continue;
    }
    if (name === '.' || name === '..' || name === '') continue;
    const firstCluster = (fatType === 32 ? e.clusterHi << 16 : 0) | e.clusterLo;
    entries.push({ name, shortName: shortName(e), entry: e, entryOffset: devOffset(i), firstCluster: firstCluster >>> 0 });
  }
  return { entries, label };
}
