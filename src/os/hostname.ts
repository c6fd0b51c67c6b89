/** The static hostname: first non-comment word of /etc/hostname (hostname(5)). */
import type { FileSystem } from '../fs/types.js';
import { readPath } from './fs-read.js';

export function parseHostname(text: string): string | null {
  for (const line of text.split('\n')) {
    const t = line.replace(/#.*/, '').trim();
    // 253 is DNS's limit; longer is not a hostname whatever the file says.
    if (t) return t.length <= 253 ? t.split(/\s+/)[0] : null;
  }
  return null;
}

export async function readHostname(fs: FileSystem): Promise<string | null> {
  const b = await readPath(fs, '/etc/hostname', 4096);
  return b ? parseHostname(b.toString('utf8')) : null;
}
