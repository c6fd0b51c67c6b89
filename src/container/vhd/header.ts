/**
 * VHD footer, dynamic header, parent locators and BAT, every field checked
 * against the file size and sane bounds so the reader can trust the numbers.
 * Error codes: past EOF -> E_TRUNCATED, nonsense (bad cookie or checksum,
 * overlapping regions) -> E_FORMAT, valid but not implemented -> E_UNSUPPORTED.
 */
import { VmdnError, type ErrorCode } from '../../errors.js';
import {
  vhdFooter, vhdDynHeader, vhdParentLocator, FOOTER_SIZE, DYN_HEADER_SIZE, FOOTER_COOKIE, DYN_COOKIE, FOOTER_CHECKSUM_AT,
  DYN_CHECKSUM_AT, PARENT_LOCATOR_AT, PARENT_LOCATORS, LOCATOR, DISK_TYPE, MAX_VIRTUAL_SIZE, MIN_BLOCK_BITS, MAX_BLOCK_BITS,
  MAX_TABLE_ENTRIES, MAX_CHS_SECTORS, SIZE_FROM_FOOTER, SECTOR, BAT_UNUSED, vhdChecksum, bitmapSize,
} from './layout.js';

export interface VhdFooterInfo {
  readonly diskType: 'fixed' | 'dynamic' | 'differencing';
  readonly virtualSize: number;
  /** Offset of the dynamic header (dynamic and differencing disks). */
  readonly dataOffset: number;
  readonly uniqueId: Uint8Array;
}

export interface VhdDynInfo {
  readonly blockSize: number;
  readonly bitmapSize: number;
  readonly tableOffset: number;
  /** BAT entries that cover the virtual size (more may be on disk; they are never read). */
  readonly entries: number;
  readonly parentUniqueId: Uint8Array;
  /** The parent's file name (differencing disks): relative locator first, else the header's name. */
  readonly parentName: string | null;
}

function fail(code: ErrorCode, path: string, msg: string, data: Record<string, unknown> = {}): never {
  throw new VmdnError(code, `${path}: ${msg}`, { path, ...data });
}

function cookieIs(buf: Uint8Array, at: number, s: string): boolean {
  if (at + s.length > buf.length) return false;
  for (let i = 0; i < s.length; i++) if (buf[at + i] !== s.charCodeAt(i)) return false;
  return true;
}

/** u64 -> number for offsets, refusing what no file can hold. */
function offset(v: bigint, path: string, field: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('E_FORMAT', path, `${field} ${v} is out of range`, { field });
  return Number(v);
}

/** A region of the file: inside it (E_TRUNCATED otherwise) and clear of the trailing footer. */
export function checkRegion(path: string, what: string, off: number, len: number, fileSize: number): void {
  if (off + len > fileSize) fail('E_TRUNCATED', path, `${what} (${off}+${len}) lies past end of file (${fileSize})`, { field: what });
  if (off + len > fileSize - FOOTER_SIZE) fail('E_FORMAT', path, `${what} (${off}+${len}) overlaps the footer at ${fileSize - FOOTER_SIZE}`, { field: what });
}

function overlaps(a: number, alen: number, b: number, blen: number): boolean {
  return a < b + blen && b < a + alen;
}

/**
 * The footer of a file whose first and last 512 bytes are `head` and `tail`.
 * Dynamic disks carry a copy at the start and the footer at the end (both
 * required: a missing end means a truncated file); fixed disks only the end.
 */
export function parseFooter(head: Uint8Array, tail: Uint8Array, path: string, fileSize: number): VhdFooterInfo {
  if (fileSize < FOOTER_SIZE) fail('E_TRUNCATED', path, `file too small for a VHD footer (${fileSize} bytes)`);
  const headHas = cookieIs(head, 0, FOOTER_COOKIE);
  const tailHas = cookieIs(tail, 0, FOOTER_COOKIE);
  if (!tailHas) {
    if (headHas) fail('E_TRUNCATED', path, 'no VHD footer at the end of the file (truncated?)');
    fail('E_FORMAT', path, 'not a VHD image (no "conectix" footer)');
  }
  // The copy at the start is the one qemu trusts for dynamic disks; it must say the same.
  const f = readFooter(tail, path);
  if (headHas && fileSize > FOOTER_SIZE && f.diskType !== 'fixed') {
    const copy = readFooter(head, path);
    if (copy.diskType !== f.diskType || copy.virtualSize !== f.virtualSize || copy.dataOffset !== f.dataOffset) {
      fail('E_FORMAT', path, 'the footer copy at the start disagrees with the footer at the end');
    }
  }
  if (f.diskType === 'fixed') {
    if (f.virtualSize > fileSize - FOOTER_SIZE) fail('E_TRUNCATED', path, `fixed VHD of ${f.virtualSize} bytes in a ${fileSize}-byte file`);
  } else {
    if (!headHas) fail('E_FORMAT', path, 'dynamic VHD without the footer copy at the start');
    if (f.dataOffset < FOOTER_SIZE) fail('E_FORMAT', path, `dynamic header offset ${f.dataOffset} overlaps the footer copy`, { field: 'dataOffset' });
    checkRegion(path, 'dynamic header', f.dataOffset, DYN_HEADER_SIZE, fileSize);
  }
  return f;
}

function readFooter(buf: Uint8Array, path: string): VhdFooterInfo {
  const f = vhdFooter.parse(buf);
  const sum = vhdChecksum(buf.subarray(0, FOOTER_SIZE), FOOTER_CHECKSUM_AT);
  if (sum !== f.checksum) fail('E_FORMAT', path, `bad footer checksum 0x${f.checksum.toString(16)} (computed 0x${sum.toString(16)})`, { field: 'checksum' });
  if (f.version >>> 16 !== 1) fail('E_UNSUPPORTED', path, `VHD version 0x${f.version.toString(16)} is not supported`);
  const diskType = f.diskType === DISK_TYPE.FIXED ? 'fixed' : f.diskType === DISK_TYPE.DYNAMIC ? 'dynamic' : f.diskType === DISK_TYPE.DIFFERENCING ? 'differencing' : null;
  if (diskType === null) fail('E_UNSUPPORTED', path, `VHD disk type ${f.diskType} is not supported`, { field: 'diskType' });
  // qemu's rule: Virtual PC and qemu's own old images mean cylinders*heads*sectors, the others current_size.
  const app = Buffer.from(f.creatorApp).toString('latin1');
  const chs = f.cylinders * f.heads * f.sectorsPerTrack;
  const sectors = SIZE_FROM_FOOTER.includes(app) || chs === MAX_CHS_SECTORS ? Number(f.currentSize / BigInt(SECTOR)) : chs;
  const virtualSize = sectors * SECTOR;
  if (!Number.isSafeInteger(virtualSize) || virtualSize > MAX_VIRTUAL_SIZE) {
    fail('E_FORMAT', path, `virtual size ${virtualSize} exceeds ${MAX_VIRTUAL_SIZE}`, { field: 'currentSize' });
  }
  const dataOffset = diskType === 'fixed' ? 0 : offset(f.dataOffset, path, 'data offset');
  return { diskType, virtualSize, dataOffset, uniqueId: f.uniqueId };
}

const utf16le = new TextDecoder('utf-16le', { fatal: true });
const utf16be = new TextDecoder('utf-16be', { fatal: true });

function decodeName(bytes: Uint8Array, dec: TextDecoder, path: string, what: string): string {
  let s: string;
  try {
    s = dec.decode(bytes);
  } catch {
    fail('E_FORMAT', path, `${what} is not valid UTF-16`);
  }
  const nul = s.indexOf('\0');
  return nul < 0 ? s : s.slice(0, nul);
}

/** The dynamic header in `buf` (DYN_HEADER_SIZE bytes read at footer.dataOffset). */
export function parseDynHeader(buf: Uint8Array, footer: VhdFooterInfo, path: string, fileSize: number): VhdDynInfo {
  const h = vhdDynHeader.parse(buf);
  if (!cookieIs(buf, 0, DYN_COOKIE)) fail('E_FORMAT', path, 'bad dynamic header cookie', { field: 'cookie' });
  const sum = vhdChecksum(buf.subarray(0, DYN_HEADER_SIZE), DYN_CHECKSUM_AT);
  if (sum !== h.checksum) fail('E_FORMAT', path, `bad dynamic header checksum 0x${h.checksum.toString(16)} (computed 0x${sum.toString(16)})`, { field: 'checksum' });
  if (h.headerVersion >>> 16 !== 1) fail('E_UNSUPPORTED', path, `dynamic header version 0x${h.headerVersion.toString(16)} is not supported`);
  const bs = h.blockSize;
  const bits = Math.log2(bs);
  if (!Number.isInteger(bits) || bits < MIN_BLOCK_BITS || bits > MAX_BLOCK_BITS) {
    fail('E_FORMAT', path, `block size ${bs} is not a power of two in [${2 ** MIN_BLOCK_BITS}, ${2 ** MAX_BLOCK_BITS}]`, { field: 'blockSize' });
  }
  const entries = Math.ceil(footer.virtualSize / bs);
  if (h.maxTableEntries < entries) fail('E_FORMAT', path, `BAT of ${h.maxTableEntries} entries cannot cover ${footer.virtualSize} bytes (need ${entries})`, { field: 'maxTableEntries' });
  if (h.maxTableEntries > MAX_TABLE_ENTRIES) fail('E_FORMAT', path, `BAT of ${h.maxTableEntries} entries exceeds ${MAX_TABLE_ENTRIES}`, { field: 'maxTableEntries' });
  const tableOffset = offset(h.tableOffset, path, 'table offset');
  const batBytes = entries * 4;
  if (tableOffset < FOOTER_SIZE || overlaps(tableOffset, batBytes, footer.dataOffset, DYN_HEADER_SIZE)) {
    fail('E_FORMAT', path, `BAT at ${tableOffset} overlaps the footer copy or the dynamic header`, { field: 'tableOffset' });
  }
  checkRegion(path, 'BAT', tableOffset, batBytes, fileSize);
  return {
    blockSize: bs, bitmapSize: bitmapSize(bs), tableOffset, entries, parentUniqueId: h.parentUniqueId,
    parentName: footer.diskType === 'differencing' ? parentName(h.parentName, path) : null,
  };
}

/** The parent's name as the dynamic header spells it (UTF-16BE, NUL-padded). */
function parentName(raw: Uint8Array, path: string): string | null {
  const name = decodeName(raw, utf16be, path, 'parent name');
  return name === '' ? null : name;
}

/** The relative-path parent locator (W2ru: UTF-16LE, ".\name"), if any: [offset, length]. */
export function relativeLocator(buf: Uint8Array, path: string, fileSize: number): [number, number] | null {
  for (let i = 0; i < PARENT_LOCATORS; i++) {
    const l = vhdParentLocator.parse(buf, PARENT_LOCATOR_AT + i * vhdParentLocator.size);
    if (l.platformCode !== LOCATOR.W2RU) continue;
    if (l.dataLength === 0 || l.dataLength > 4096 || l.dataLength % 2 !== 0) fail('E_FORMAT', path, `parent locator length ${l.dataLength} out of range`);
    const off = offset(l.dataOffset, path, 'parent locator offset');
    if (off < FOOTER_SIZE) fail('E_FORMAT', path, `parent locator at ${off} overlaps the footer copy`);
    checkRegion(path, 'parent locator', off, l.dataLength, fileSize);
    return [off, l.dataLength];
  }
  return null;
}

/** A relative locator's bytes as a file name ('.\parent.vhd' -> 'parent.vhd', backslashes as '/'). */
export function locatorName(bytes: Uint8Array, path: string): string {
  const s = decodeName(bytes, utf16le, path, 'parent locator').replaceAll('\\', '/');
  return s.startsWith('./') ? s.slice(2) : s;
}

/**
 * Check the BAT (`raw`, big-endian) and return it as block -> file offset
 * (-1: not allocated). Every block must lie inside the file, clear of the
 * footers, the dynamic header and the BAT, and clear of the other blocks.
 */
export function parseBat(raw: Uint8Array, footer: VhdFooterInfo, dyn: VhdDynInfo, path: string, fileSize: number): Float64Array {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const out = new Float64Array(dyn.entries).fill(-1);
  const span = dyn.bitmapSize + dyn.blockSize;
  const used: number[] = [];
  for (let i = 0; i < dyn.entries; i++) {
    const e = dv.getUint32(i * 4);
    if (e === BAT_UNUSED) continue;
    const at = e * SECTOR;
    if (at < FOOTER_SIZE || overlaps(at, span, footer.dataOffset, DYN_HEADER_SIZE) || overlaps(at, span, dyn.tableOffset, dyn.entries * 4)) {
      fail('E_FORMAT', path, `BAT entry ${i} (block at ${at}) overlaps the VHD headers or the BAT`, { field: 'bat', block: i });
    }
    checkRegion(path, `block ${i}`, at, span, fileSize);
    out[i] = at;
    used.push(at);
  }
  used.sort((a, b) => a - b);
  for (let i = 1; i < used.length; i++) {
    if (used[i] < used[i - 1] + span) fail('E_FORMAT', path, `two BAT entries share the file region at ${used[i]}`, { field: 'bat' });
  }
  return out;
}
