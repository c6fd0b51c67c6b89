/**
 * dpkg's database: var/lib/dpkg/status (RFC 822-style stanzas; continuation
 * lines start with a space or tab) and info/<pkg>[:<arch>].list (one owned
 * path per line). Sizes and counts are bounded: the database is image data.
 */
import type { FileSystem } from '../fs/types.js';
import { readNode, readPath, resolvePath } from './fs-read.js';
import { VmdnError, check } from '../errors.js';

export const DPKG_DIR = '/var/lib/dpkg';
const MAX_STATUS = 64 << 20;
const MAX_STANZAS = 500_000;
const MAX_LIST = 16 << 20;
const MAX_LISTS_TOTAL = 512 << 20;

export type Stanza = Map<string, string>;

/** Parse control-file stanzas; field names are case-insensitive, so keys are lower-cased. */
export function parseStanzas(text: string, warnings: string[] = []): Stanza[] {
  const out: Stanza[] = [];
  let cur: Stanza | undefined;
  let last: string | undefined;
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n].replace(/\r$/, '');
    if (line.trim() === '') { cur = undefined; last = undefined; continue; }
    if (line[0] === ' ' || line[0] === '\t') {
      if (cur && last) cur.set(last, `${cur.get(last)}\n${line.slice(1)}`);
      else warnings.push(`dpkg status line ${n + 1}: continuation without a field`);
      continue;
    }
    if (line[0] === '#') continue;
    const m = /^([^:\s]+):[ \t]*(.*)$/.exec(line);
    if (!m) { warnings.push(`dpkg status line ${n + 1}: not a field`); continue; }
    if (!cur) {
      check(out.length < MAX_STANZAS, 'E_FORMAT', `dpkg status has more than ${MAX_STANZAS} stanzas`);
      cur = new Map();
      out.push(cur);
    }
    last = m[1].toLowerCase();
    cur.set(last, m[2].trimEnd());
  }
  return out;
}

export interface DpkgPackage {
  name: string;
  version: string;
  arch: string;
  /** The Status field's three words: want, error flag, state. */
  status: string;
}

/** Packages whose state is "installed" (e.g. "install ok installed", "hold ok installed"). */
export function installedPackages(stanzas: Stanza[]): DpkgPackage[] {
  const out: DpkgPackage[] = [];
  for (const s of stanzas) {
    const name = s.get('package'), status = s.get('status') ?? '';
    if (!name || status.split(/\s+/)[2] !== 'installed') continue;
    out.push({ name, version: s.get('version') ?? '', arch: s.get('architecture') ?? '', status });
  }
  return out;
}

export async function readDpkgStatus(fs: FileSystem, warnings: string[] = []): Promise<DpkgPackage[] | undefined> {
  const b = await readPath(fs, `${DPKG_DIR}/status`, MAX_STATUS);
  return b ? installedPackages(parseStanzas(b.toString('utf8'), warnings)) : undefined;
}

function normalise(p: string): string {
  const parts = p.split('/').filter((c) => c !== '' && c !== '.');
  return '/' + parts.join('/');
}

/** path -> owning package names (with ":arch" as dpkg names the list file), from info/*.list. */
export async function readFileOwners(fs: FileSystem, warnings: string[] = []): Promise<Map<string, string[]>> {
  const owners = new Map<string, string[]>();
  let dir;
  try {
    dir = await resolvePath(fs, `${DPKG_DIR}/info`);
  } catch (err) {
    if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') return owners;
    throw err;
  }
  let total = 0;
  for (const e of await fs.readdir(dir)) {
    if (!e.name.endsWith('.list') || e.type !== 'file') continue;
    const pkg = e.name.slice(0, -'.list'.length);
    const node = await fs.stat(e.ino);
    total += node.size;
    check(total <= MAX_LISTS_TOTAL, 'E_FORMAT', `dpkg info/*.list files exceed ${MAX_LISTS_TOTAL} bytes`);
    const text = (await readNode(fs, node, MAX_LIST, `${DPKG_DIR}/info/${e.name}`)).toString('utf8');
    for (const line of text.split('\n')) {
      if (!line) continue;
      if (line[0] !== '/') { warnings.push(`info/${e.name}: ignoring relative path`); continue; }
      const p = normalise(line);
      const list = owners.get(p);
      if (!list) owners.set(p, [pkg]);
      else if (!list.includes(pkg)) list.push(pkg);
    }
  }
  return owners;
}

export { normalise as normaliseImagePath };
