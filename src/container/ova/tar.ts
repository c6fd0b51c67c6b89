/**
 * The members of a tar archive (an OVA) as byte ranges of the file, read
 * from the ustar headers alone: a member is then opened in place as a window
 * of the archive. Every header is checked (checksum, octal or base-256
 * fields, size inside the file); members must be regular files with plain
 * names (no directories, no "..", not absolute); pax headers may set a
 * member's path and size, nothing else is followed.
 */
import { VmdnError } from '../../errors.js';

export const TAR_BLOCK = 512;
/** An OVA holds a descriptor, a manifest, a certificate and some disks: more members than this is not an OVA. */
export const MAX_MEMBERS = 4096;
const MAX_PAX = 64 * 1024;

export interface TarMember {
  name: string;
  /** Offset of the member's data in the archive. */
  offset: number;
  size: number;
}

/** Reads `length` bytes at `pos` (fewer at end of file). */
export type ReadAt = (pos: number, length: number) => Promise<Uint8Array>;

function fail(file: string, msg: string, data: Record<string, unknown> = {}): never {
  throw new VmdnError('E_FORMAT', `${file}: ${msg}`, { path: file, ...data });
}

function cstr(b: Uint8Array, at: number, len: number): string {
  let end = at;
  while (end < at + len && b[end] !== 0) end++;
  return Buffer.from(b.subarray(at, end)).toString('utf8');
}

/** A numeric field: octal text (space/NUL padded), or GNU base-256 (high bit of the first byte). */
function num(b: Uint8Array, at: number, len: number, file: string, what: string): number {
  if (b[at]! & 0x80) {
    if (b[at] !== 0x80) fail(file, `tar header: negative or oversized ${what}`);
    let n = 0;
    for (let i = at + 1; i < at + len; i++) n = n * 256 + b[i]!;
    if (!Number.isSafeInteger(n)) fail(file, `tar header: ${what} out of range`);
    return n;
  }
  const s = Buffer.from(b.subarray(at, at + len)).toString('latin1').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) fail(file, `tar header: ${what} is not an octal number`, { field: what });
  return parseInt(s, 8);
}

function checksumOk(h: Uint8Array, file: string): boolean {
  const want = num(h, 148, 8, file, 'checksum');
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum === want;
}

/** A member name as stored, or an error: "./" prefixes are dropped; directories, "..", absolute names are refused. */
export function safeMemberName(raw: string, file: string): string {
  const name = raw.replace(/^(\.\/)+/, '');
  if (name === '' || name.length > 1024) fail(file, `tar member with an empty or overlong name`, { member: raw });
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) fail(file, `tar member "${raw}" has an absolute path`, { member: raw });
  if (name.split(/[\\/]/).some((p) => p === '..')) fail(file, `tar member "${raw}" points outside the archive ("..")`, { member: raw });
  if (/[\\/]/.test(name)) fail(file, `tar member "${raw}" is in a directory (OVA members sit at the top)`, { member: raw });
  if (/[\0-\x1f]/.test(name)) fail(file, `tar member name has control characters`, { member: raw });
  return name;
}

/** path= and size= from a pax extended header; other keys are ignored. */
function parsePax(b: Uint8Array, file: string): { path?: string; size?: number } {
  const out: { path?: string; size?: number } = {};
  const text = Buffer.from(b).toString('utf8');
  let at = 0;
  while (at < text.length) {
    const sp = text.indexOf(' ', at);
    if (sp < 0) break;
    const len = Number(text.slice(at, sp));
    if (!Number.isSafeInteger(len) || len <= sp - at || at + len > text.length) fail(file, 'tar: malformed pax header record');
    const rec = text.slice(sp + 1, at + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) {
      const k = rec.slice(0, eq);
      const v = rec.slice(eq + 1);
      if (k === 'path') out.path = v;
      if (k === 'size') {
        if (!/^[0-9]{1,16}$/.test(v)) fail(file, 'tar: pax size is not a number');
        out.size = Number(v);
      }
    }
    at += len;
  }
  return out;
}

/** The members of the tar archive of `fileSize` bytes read through `readAt`. */
export async function listTar(readAt: ReadAt, fileSize: number, file: string): Promise<TarMember[]> {
  const members: TarMember[] = [];
  const seen = new Set<string>();
  let pos = 0;
  let pax: { path?: string; size?: number } = {};
  for (;;) {
    if (pos === fileSize) break; // no end-of-archive blocks: accepted, as GNU tar does
    if (pos + TAR_BLOCK > fileSize) throw new VmdnError('E_TRUNCATED', `${file}: tar archive ends inside a header`, { path: file, offset: pos });
    const h = await readAt(pos, TAR_BLOCK);
    if (h.length < TAR_BLOCK) throw new VmdnError('E_TRUNCATED', `${file}: tar archive ends inside a header`, { path: file, offset: pos });
    if (h.every((x) => x === 0)) break; // end of archive
    if (!checksumOk(h, file)) fail(file, `tar header at ${pos} has a bad checksum (not a tar archive, or damaged)`, { offset: pos });
    const type = String.fromCharCode(h[156]!);
    let size = num(h, 124, 12, file, 'size');
    const dataAt = pos + TAR_BLOCK;
    if (pax.size !== undefined && type !== 'x' && type !== 'g') size = pax.size;
    if (size > fileSize - dataAt) throw new VmdnError('E_TRUNCATED', `${file}: tar member at ${pos} claims ${size} bytes, past the end of the archive`, { path: file, offset: pos, size });
    const next = dataAt + Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
    if (type === 'x' || type === 'g') {
      if (size > MAX_PAX) fail(file, `tar pax header of ${size} bytes is too large`);
      if (type === 'x') pax = parsePax(await readAt(dataAt, size), file);
      pos = next;
      continue;
    }
    if (type !== '0' && type !== '\0' && type !== '7') {
      fail(file, `tar member at ${pos} is not a regular file (type "${type.replace(/\0/, '\\0')}"); an OVA holds files only`, { offset: pos, type });
    }
    const ustar = cstr(h, 257, 6) === 'ustar';
    const prefix = ustar ? cstr(h, 345, 155) : '';
    const raw = pax.path ?? (prefix ? `${prefix}/${cstr(h, 0, 100)}` : cstr(h, 0, 100));
    pax = {};
    const name = safeMemberName(raw, file);
    if (seen.has(name)) fail(file, `tar member "${name}" appears twice`, { member: name });
    seen.add(name);
    if (members.length >= MAX_MEMBERS) fail(file, `more than ${MAX_MEMBERS} tar members`);
    members.push({ name, offset: dataAt, size });
    pos = next;
  }
  if (members.length === 0) fail(file, 'tar archive has no members');
  return members;
}

/** True if the 512-byte block `h` looks like a tar header (ustar magic and a valid checksum). */
export function isTarHeader(h: Uint8Array): boolean {
  if (h.length < TAR_BLOCK || cstr(h, 257, 5) !== 'ustar') return false;
  try {
    return checksumOk(h, '');
  } catch {
    return false;
  }
}
