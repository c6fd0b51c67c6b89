/**
 * Packages as ingredients: each .deb is kept as ordinary objects (1 MiB
 * slices, so origins, edges and pulls cache and dedup them like chunks), plus
 * one small index object listing its regular files with size and SHA-256.
 * A store remembers which objects make up which .deb (STORE/packages/), so a
 * package used by many images is fetched and indexed once.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import type { LocalStore } from '../store/local-store.js';
import type { ReadableStore } from '../store/types.js';
import { isDigest, type Digest } from '../store/digest.js';
import { fetchDeb, fileSha256, type DebRecord } from '../os/apt-mirror.js';
import { indexDeb, type DebFileIndex } from '../os/deb.js';
import { VmdnError } from '../errors.js';

export const DEB_SLICE = 1 << 20;
const MAX_DEB = 2 ** 34;
const INDEX_KIND = 'vmdn.deb-index';

/** A package as a manifest records it (docs/format.md, "packages"). */
export interface PackageRef {
  name: string;
  version: string;
  arch: string;
  /** The .deb's SHA-256 and size, as the archive's index gives them. */
  sha256: string;
  size: number;
  /** The .deb's bytes as DEB_SLICE-long objects, in order. */
  deb: Digest[];
  /** Object listing the package's regular files: [path, size, sha256]. */
  index: Digest;
}

export function validatePackageRef(p: PackageRef): string | undefined {
  if (!p || typeof p !== 'object') return 'not an object';
  if (typeof p.name !== 'string' || !/^[a-z0-9][a-z0-9+.-]{0,127}$/.test(p.name)) return 'bad name';
  if (typeof p.version !== 'string' || !/^[A-Za-z0-9.+~:-]{1,128}$/.test(p.version)) return 'bad version';
  if (typeof p.arch !== 'string' || !/^[a-z0-9-]{1,32}$/.test(p.arch)) return 'bad architecture';
  if (typeof p.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(p.sha256)) return 'bad sha256';
  if (!Number.isSafeInteger(p.size) || p.size <= 0 || p.size > MAX_DEB) return 'bad size';
  if (!Array.isArray(p.deb) || p.deb.length !== Math.ceil(p.size / DEB_SLICE) || !p.deb.every(isDigest)) return 'bad slices';
  if (!isDigest(p.index)) return 'bad index';
  return undefined;
}

export function encodeDebIndex(files: Map<string, DebFileIndex>): Uint8Array {
  const list = [...files].sort(([a], [b]) => (a < b ? -1 : 1)).map(([p, f]) => [p, f.size, f.sha256]);
  return Buffer.from(JSON.stringify({ kind: INDEX_KIND, files: list }));
}

export function decodeDebIndex(bytes: Uint8Array): Map<string, DebFileIndex> {
  let o: { kind?: unknown; files?: unknown };
  try {
    o = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new VmdnError('E_MANIFEST', 'package index is not JSON', {}, { cause: err });
  }
  if (o?.kind !== INDEX_KIND || !Array.isArray(o.files) || o.files.length > 1_000_000) throw new VmdnError('E_MANIFEST', 'not a package index');
  const out = new Map<string, DebFileIndex>();
  for (const e of o.files as unknown[]) {
    const [p, size, sha] = Array.isArray(e) ? e : [];
    if (typeof p !== 'string' || !p || p.length > 65536 || !Number.isSafeInteger(size) || (size as number) < 0 || typeof sha !== 'string' || !/^[0-9a-f]{64}$/.test(sha)) throw new VmdnError('E_MANIFEST', 'package index: bad entry');
    out.set(p, { size: size as number, sha256: sha });
  }
  return out;
}

const cachePath = (store: LocalStore, sha256: string) => path.join(store.dir, 'packages', `${sha256}.json`);

async function cached(store: LocalStore, rec: DebRecord): Promise<PackageRef | undefined> {
  let ref: PackageRef;
  try {
    ref = JSON.parse(await fsp.readFile(cachePath(store, rec.sha256), 'utf8'));
  } catch {
    return undefined;
  }
  if (validatePackageRef(ref) || ref.sha256 !== rec.sha256 || ref.size !== rec.size) return undefined;
  // gc may have dropped objects no image used: then it is fetched again
  for (const d of [...ref.deb, ref.index]) if (!store.index.getObject(d)) return undefined;
  return { ...ref, name: rec.name, version: rec.version, arch: rec.arch };
}

export interface Ingredient {
  ref: PackageRef;
  files: Map<string, DebFileIndex>;
  /** Bytes downloaded from the mirror for it (0 when the store had it). */
  fetched: number;
}

/**
 * The package as objects in `store`, fetching it from its archive when the
 * store does not have it yet. `debCache`: a directory of verified .debs kept
 * across stores (optional).
 */
export async function ingredient(store: LocalStore, rec: DebRecord, opts: { debCache?: string; signal?: AbortSignal; onAdded?: (d: Digest) => void }): Promise<Ingredient> {
  const have = await cached(store, rec);
  if (have) return { ref: have, files: decodeDebIndex(await store.get(have.index, { signal: opts.signal })), fetched: 0 };
  const dir = opts.debCache ?? path.join(store.tmpDir, `debs-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  const hadCopy = opts.debCache !== undefined && fs.existsSync(path.join(dir, `${rec.sha256}.deb`));
  const file = await fetchDeb(rec, dir, opts.signal);
  try {
    const deb: Digest[] = [];
    const h = await fsp.open(file, 'r');
    try {
      const buf = Buffer.alloc(DEB_SLICE);
      for (let off = 0; off < rec.size; off += DEB_SLICE) {
        const { bytesRead } = await h.read(buf, 0, Math.min(DEB_SLICE, rec.size - off), off);
        const r = await store.put(buf.subarray(0, bytesRead), { signal: opts.signal });
        if (r.added) opts.onAdded?.(r.digest);
        deb.push(r.digest);
      }
    } finally {
      await h.close();
    }
    const files = await indexDeb(file, opts.signal);
    const idx = await store.put(encodeDebIndex(files), { signal: opts.signal });
    if (idx.added) opts.onAdded?.(idx.digest);
    const ref: PackageRef = { name: rec.name, version: rec.version, arch: rec.arch, sha256: rec.sha256, size: rec.size, deb, index: idx.digest };
    const dest = cachePath(store, rec.sha256);
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    const tmp = `${dest}.${process.pid}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify(ref));
    await fsp.rename(tmp, dest);
    return { ref, files, fetched: hadCopy ? 0 : rec.size };
  } finally {
    if (!opts.debCache) await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** Write a stored package back out as a .deb file, checking its SHA-256 end to end. */
export async function materializeDeb(ref: PackageRef, store: ReadableStore, file: string, signal?: AbortSignal): Promise<void> {
  const h = await fsp.open(file, 'wx');
  try {
    let off = 0;
    for (const d of ref.deb) {
      const b = await store.get(d, { signal });
      await h.write(b, 0, b.length, off);
      off += b.length;
    }
    if (off !== ref.size) throw new VmdnError('E_CORRUPT_OBJECT', `package ${ref.name} ${ref.version}: slices hold ${off} bytes, expected ${ref.size}`, { package: ref.name });
  } finally {
    await h.close();
  }
  if ((await fileSha256(file)) !== ref.sha256) throw new VmdnError('E_CORRUPT_OBJECT', `package ${ref.name} ${ref.version}: reassembled .deb fails its SHA-256`, { package: ref.name });
}
