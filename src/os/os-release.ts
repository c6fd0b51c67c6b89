/**
 * os-release(5): KEY=value lines with shell-like quoting. systemd's rules:
 * values may be unquoted, 'single' (literal) or "double" quoted (where \\ \" \$
 * \` escape); '#' starts a comment line. /etc/os-release wins over
 * /usr/lib/os-release, and /etc/os-release is usually a symlink to it.
 */
import type { FileSystem } from '../fs/types.js';
import { readPath } from './fs-read.js';

const MAX_BYTES = 64 * 1024;

function unquote(v: string): string {
  let out = '';
  for (let i = 0; i < v.length; i++) {
    const ch = v[i];
    if (ch === "'") {
      const end = v.indexOf("'", i + 1);
      out += v.slice(i + 1, end < 0 ? v.length : end);
      i = end < 0 ? v.length : end;
    } else if (ch === '"') {
      for (i++; i < v.length && v[i] !== '"'; i++) {
        if (v[i] === '\\' && i + 1 < v.length && '\\"$`'.includes(v[i + 1])) i++;
        else if (v[i] === '\\' && v[i + 1] === '\n') { i++; continue; }
        out += v[i];
      }
    } else if (ch === '\\' && i + 1 < v.length) {
      out += v[++i];
    } else if (ch === ' ' || ch === '\t') {
      break; // unquoted whitespace ends the value
    } else {
      out += ch;
    }
  }
  return out;
}

export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]] = unquote(m[2]);
  }
  return out;
}

export async function readOsRelease(fs: FileSystem): Promise<Record<string, string> | null> {
  for (const p of ['/etc/os-release', '/usr/lib/os-release']) {
    const b = await readPath(fs, p, MAX_BYTES);
    if (b) return parseOsRelease(b.toString('utf8'));
  }
  return null;
}
