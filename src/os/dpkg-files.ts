/**
 * What dpkg says it installed, file by file: each installed package with the
 * paths its info/*.list claims and the MD5 its md5sums (or, for conffiles,
 * the status file's Conffiles field) records for them. The packages strategy
 * only trusts a file to a package when the image's own database vouches for
 * it and its content matches the package from the mirror.
 */
import type { FileSystem } from '../fs/types.js';
import { readPath } from './fs-read.js';
import { DPKG_DIR, parseStanzas, readFileOwners } from './dpkg.js';
import { VmdnError } from '../errors.js';

const MAX_STATUS = 64 << 20;
const MAX_MD5SUMS = 16 << 20;

export interface InstalledPackage {
  name: string;
  version: string;
  arch: string;
  /** The name of its info/ files: "name:arch" for multi-arch same packages, else "name". */
  listName: string;
  /** Path (no leading slash, latin1 keyed) -> MD5 hex, from md5sums and Conffiles. */
  md5: Map<string, string>;
  conffiles: Set<string>;
}

export interface DpkgFiles {
  packages: InstalledPackage[];
  /** Path (no leading slash) -> list names of the packages claiming it. */
  owners: Map<string, string[]>;
  /** dpkg's native architecture (what Packages indexes to read). */
  arch: string;
}

const key = (p: string) => p.replace(/^\/+/, '');

/** MD5 lines: "<32 hex>  path" (path relative to the root). */
export function parseMd5sums(text: string, into: Map<string, string>): void {
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{32}) [ *](.+)$/.exec(line);
    if (m) into.set(key(m[2]!), m[1]!);
  }
}

export async function readDpkgFiles(fs: FileSystem, warnings: string[] = []): Promise<DpkgFiles | undefined> {
  const status = await readPath(fs, `${DPKG_DIR}/status`, MAX_STATUS);
  if (!status) return undefined;
  const stanzas = parseStanzas(status.toString('latin1'), warnings);
  const ownersAbs = await readFileOwners(fs, warnings);
  const owners = new Map<string, string[]>();
  for (const [p, l] of ownersAbs) owners.set(key(p), l);
  const lists = new Set<string>();
  for (const l of ownersAbs.values()) for (const n of l) lists.add(n);
  const archFile = await readPath(fs, `${DPKG_DIR}/arch`, 4096);
  const packages: InstalledPackage[] = [];
  const archCount = new Map<string, number>();
  for (const s of stanzas) {
    const name = s.get('package');
    const state = (s.get('status') ?? '').split(/\s+/)[2];
    if (!name || state !== 'installed') continue;
    const version = s.get('version') ?? '';
    const arch = s.get('architecture') ?? '';
    if (!/^[a-z0-9][a-z0-9+.-]*$/.test(name) || !/^[A-Za-z0-9.+~:-]+$/.test(version) || !/^[a-z0-9-]+$/.test(arch)) {
      warnings.push(`dpkg status: skipping a package with an unusual name/version/arch (${JSON.stringify(name)})`);
      continue;
    }
    if (arch !== 'all') archCount.set(arch, (archCount.get(arch) ?? 0) + 1);
    const listName = lists.has(`${name}:${arch}`) ? `${name}:${arch}` : name;
    const md5 = new Map<string, string>();
    const sums = await readPath(fs, `${DPKG_DIR}/info/${listName}.md5sums`, MAX_MD5SUMS);
    if (sums) parseMd5sums(sums.toString('latin1'), md5);
    const conffiles = new Set<string>();
    for (const line of (s.get('conffiles') ?? '').split('\n')) {
      const m = /^\s*(\/\S.*?)\s+([0-9a-f]{32})(?:\s+\S+)?\s*$/.exec(line);
      if (!m) continue;
      conffiles.add(key(m[1]!));
      md5.set(key(m[1]!), m[2]!);
    }
    packages.push({ name, version, arch, listName, md5, conffiles });
  }
  const native = archFile?.toString('latin1').split('\n')[0]?.trim() || [...archCount].sort((a, b) => b[1] - a[1])[0]?.[0];
  if (!native) {
    if (packages.length === 0) return { packages, owners, arch: 'all' };
    throw new VmdnError('E_FORMAT', 'dpkg database: cannot tell the architecture (no package has one)');
  }
  return { packages, owners, arch: native };
}
