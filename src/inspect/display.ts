/** Showing image names on a terminal: they are data, so control bytes and invalid UTF-8 are escaped, never passed through. */
import type { TreeEntry } from './tree.js';
import { humanBytes } from '../util/size.js';

const strict = new TextDecoder('utf-8', { fatal: true });
const ESC: Record<number, string> = { 0x0a: '\\n', 0x09: '\\t', 0x0d: '\\r', 0x5c: '\\\\' };
const hex = (b: number) => '\\x' + b.toString(16).padStart(2, '0');

const UNSAFE = /[\u0080-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** Like `ls --quoting-style=escape`: \n, \t, \\ and \xHH for other control or invalid bytes. */
export function escapeBytes(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    if (ESC[b]) { out += ESC[b]; i++; continue; }
    if (b < 0x20 || b === 0x7f) { out += hex(b); i++; continue; }
    if (b < 0x80) { out += String.fromCharCode(b); i++; continue; }
    const n = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    let ch: string | undefined;
    if (n && i + n <= bytes.length) {
      try { ch = strict.decode(bytes.subarray(i, i + n)); } catch { ch = undefined; }
    }
    // C1 controls (U+0080..U+009F) can move a terminal's cursor too; bidi controls
    // (U+202E RIGHT-TO-LEFT OVERRIDE and friends) reorder what is shown, so a name can pose as another.
    if (ch !== undefined && !UNSAFE.test(ch)) { out += ch; i += n; }
    else { out += hex(b); i++; }
  }
  return out;
}

/** escapeBytes for a string (a path, a label, a message) shown to a human. */
export function escapeText(s: string): string {
  return escapeBytes(Buffer.from(s, 'utf8'));
}

export function displayPath(e: Pick<TreeEntry, 'path' | 'pathB64'>): string {
  return escapeBytes(e.pathB64 ? Buffer.from(e.pathB64, 'base64') : Buffer.from(e.path));
}

const TYPE_CHAR: Record<TreeEntry['type'], string> = { file: '-', dir: 'd', symlink: 'l', chardev: 'c', blockdev: 'b', fifo: 'p', socket: 's' };

/** "drwxr-xr-x" with s/S, t/T as ls shows setuid, setgid and sticky. */
export function modeString(type: TreeEntry['type'], perm: number): string {
  const r = (bits: number, special: boolean, ch: string) =>
    (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-');
  return TYPE_CHAR[type] + r(perm >> 6, !!(perm & 0o4000), 's') + r(perm >> 3, !!(perm & 0o2000), 's') + r(perm, !!(perm & 0o1000), 't');
}

export function timeString(t: { sec: number }): string {
  return new Date(t.sec * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}

/** One `ls -l` style line: mode, links, uid, gid, size (or major,minor), mtime (UTC), path, -> target. */
export function longLine(e: TreeEntry, name: string, human = false): string {
  const size = e.rdev ? `${e.rdev.major},${e.rdev.minor}` : human ? humanBytes(e.size) : String(e.size);
  const target = e.target !== undefined ? ` -> ${escapeBytes(Buffer.from(e.target))}` : '';
  const hash = e.sha256 ? ` ${e.sha256}` : '';
  return `${modeString(e.type, e.perm)} ${String(e.nlink).padStart(3)} ${String(e.uid).padStart(5)} ${String(e.gid).padStart(5)} ${size.padStart(10)} ${timeString(e.mtime)}${hash} ${name}${target}`;
}
