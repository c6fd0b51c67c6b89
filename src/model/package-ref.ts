/**
 * A package as a manifest records it (docs/format.md, "packages"): the .deb it
 * is, and the objects it is kept as. Part of the manifest format, so it lives
 * beside it; the packages strategy (strategy/packages/) makes and unpacks them.
 */
import { isDigest, type Digest } from '../store/digest.js';
import { MAX_CHUNK, type ChunkEntry } from './chunk.js';

const MAX_DEB = 2 ** 34;
const MAX_TAR = 2 ** 40;

/** A package as a manifest records it (docs/format.md, "packages"). */
export interface PackageRef {
  name: string;
  version: string;
  arch: string;
  /** The .deb's SHA-256 and size, as the archive's index gives them. */
  sha256: string;
  size: number;
  /** Its data member as an uncompressed tar: length, and [offset, length, digest] chunks (uncovered bytes zero). */
  tarSize: number;
  tar: ChunkEntry[];
  /** Object listing the package's regular files: [path, size, sha256]. */
  index: Digest;
}

/** Every object a package is kept as. */
export const packageObjects = (p: PackageRef): Digest[] => [...p.tar.map((c) => c[2]), p.index];

export function validatePackageRef(p: PackageRef): string | undefined {
  if (!p || typeof p !== 'object') return 'not an object';
  if (typeof p.name !== 'string' || !/^[a-z0-9][a-z0-9+.-]{0,127}$/.test(p.name)) return 'bad name';
  if (typeof p.version !== 'string' || !/^[A-Za-z0-9.+~:-]{1,128}$/.test(p.version)) return 'bad version';
  if (typeof p.arch !== 'string' || !/^[a-z0-9-]{1,32}$/.test(p.arch)) return 'bad architecture';
  if (typeof p.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(p.sha256)) return 'bad sha256';
  if (!Number.isSafeInteger(p.size) || p.size <= 0 || p.size > MAX_DEB) return 'bad size';
  if (!Number.isSafeInteger(p.tarSize) || p.tarSize <= 0 || p.tarSize > MAX_TAR) return 'bad tar size';
  if (!Array.isArray(p.tar) || p.tar.length === 0 || p.tar.length > 1 << 26) return 'bad tar chunks';
  let end = 0;
  for (const c of p.tar) {
    if (!Array.isArray(c) || c.length !== 3) return 'bad tar chunk';
    const [o, l, d] = c;
    if (!Number.isSafeInteger(o) || !Number.isSafeInteger(l) || l <= 0 || l > MAX_CHUNK || o < end || o + l > p.tarSize || !isDigest(d)) return 'bad tar chunk';
    end = o + l;
  }
  if (!isDigest(p.index)) return 'bad index';
  return undefined;
}
