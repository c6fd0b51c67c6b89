/**
 * What operating system an image's root filesystem holds: os-release,
 * hostname, and the installed packages with the file -> package index.
 * dpkg is read fully; rpm is only detected (its sqlite database is not read).
 */
import type { FileSystem } from '../fs/types.js';
import { readOsRelease } from './os-release.js';
import { readHostname } from './hostname.js';
import { readDpkgStatus, readFileOwners, normaliseImagePath } from './dpkg.js';
import { resolvePath } from './fs-read.js';
import { VmdnError } from '../errors.js';

export interface OsPackage {
  name: string;
  version: string;
  arch: string;
}

export interface OsInspection {
  osRelease: Record<string, string> | null;
  hostname: string | null;
  packageManager: 'dpkg' | 'rpm' | null;
  packages: OsPackage[];
  warnings: string[];
  /** Packages owning an image path (dpkg only; loaded on first call). */
  fileOwners(path: string): Promise<string[]>;
}

async function exists(fs: FileSystem, p: string): Promise<boolean> {
  try {
    await resolvePath(fs, p);
    return true;
  } catch (err) {
    if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') return false;
    throw err;
  }
}

export async function inspectOs(fs: FileSystem): Promise<OsInspection> {
  const warnings: string[] = [];
  const osRelease = await readOsRelease(fs);
  const hostname = await readHostname(fs);
  const dpkg = await readDpkgStatus(fs, warnings);
  let packageManager: OsInspection['packageManager'] = null;
  if (dpkg) packageManager = 'dpkg';
  else if ((await exists(fs, '/var/lib/rpm/rpmdb.sqlite')) || (await exists(fs, '/var/lib/rpm/Packages'))) {
    packageManager = 'rpm';
    warnings.push('rpm database found but not read: package list unavailable');
  }
  let owners: Promise<Map<string, string[]>> | undefined;
  return {
    osRelease, hostname, packageManager, warnings,
    packages: (dpkg ?? []).map(({ name, version, arch }) => ({ name, version, arch })),
    async fileOwners(path: string): Promise<string[]> {
      if (packageManager !== 'dpkg') return [];
      owners ??= readFileOwners(fs, warnings);
      return [...((await owners).get(normaliseImagePath(path)) ?? [])];
    },
  };
}
