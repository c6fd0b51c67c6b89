/** Run mtools on image files (UTF-8 locale so long names round-trip) and parse `mdir -/ -a`. */
import { execFileSync } from 'node:child_process';

const ENV = { ...process.env, MTOOLS_SKIP_CHECK: '1', LC_ALL: 'C.UTF-8' };

export function mtool(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', env: ENV, maxBuffer: 64 << 20 });
}

export interface MdirEntry {
  type: 'dir' | 'file';
  size: number;
  /** "YYYY-MM-DD HH:MM" as mdir prints it. */
  when: string;
}

/**
 * `mdir -/ -a` prints, per directory, "Directory for ::/path" and then lines
 * "BASE____ EXT  size|<DIR> date  time  [long name]". The long name, when
 * present, is the real name; otherwise base.ext (mtools shows the NT
 * lower-case flags the same way Linux does).
 */
export function mdirTree(image: string): Map<string, MdirEntry> {
  const out = new Map<string, MdirEntry>();
  let dir: string | undefined;
  for (const line of mtool('mdir', ['-/', '-a', '-i', image, '::']).split('\n')) {
    const d = /^Directory for ::(\/.*)$/.exec(line);
    if (d) { dir = d[1] === '/' ? '' : d[1].replace(/\/$/, ''); continue; }
    const m = /^(.{8}) (.{3}) +(<DIR>|\d+) +(\d{4}-\d\d-\d\d) +(\d\d?:\d\d)(?: {1,2}(.*))?$/u.exec(line.replace(/ +$/, ''));
    if (!m || dir === undefined) continue;
    const [, base, ext, size, date, time, long] = m;
    const short = ext.trim() ? `${base.trim()}.${ext.trim()}` : base.trim();
    const name = long && long.trim() ? long : short;
    if (name === '.' || name === '..') continue;
    out.set(`${dir}/${name}`, { type: size === '<DIR>' ? 'dir' : 'file', size: size === '<DIR>' ? 0 : Number(size), when: `${date} ${time.padStart(5, '0')}` });
  }
  return out;
}
