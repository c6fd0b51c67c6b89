/**
 * Packages as ingredients: each .deb, identified by name, version,
 * architecture and SHA-256, is kept as ordinary objects -- its data member,
 * uncompressed by dpkg-deb once at import and cut into content-defined
 * chunks (zstd like every object: an export then reads it at zstd speed, not
 * xz's, and unchanged files dedup across package versions) -- plus one small
 * index object listing its regular files with size and SHA-256. Origins,
 * edges and pulls cache them like chunks. A store remembers which objects
 * make up which .deb (STORE/packages/), so a package used by many images is
 * fetched and indexed once.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import os from 'node:os';
import { hasSideRecords, type ReadableStore, type WritableStore } from '../../store/types.js';
import { PassThrough } from 'node:stream';
import { isDigest, type Digest } from '../../store/digest.js';
import { fetchDeb, type DebRecord } from '../../os/apt-mirror.js';
import { dpkgTar, indexTar, readTar, type DebFileIndex } from '../../os/deb.js';
import { parseChunkerSpec } from '../chunker.js';
import { packageObjects, validatePackageRef, type PackageRef } from '../../model/package-ref.js';
import { StreamReader } from '../stream-chunks.js';
import { TarChunks } from './tar.js';
import { DEFAULT_CHUNKER_SPEC, DEFAULT_MIN_FILE } from '../defaults.js';
import { VmdnError } from '../../errors.js';
import { drained } from '../../util/drain.js';

/**
 * Fixed, whatever an image's own chunker: a package's objects must be the same in every image.
 * The default chunker and minimum file size, so package files share objects with images'.
 */
const TAR_CHUNKER = parseChunkerSpec(DEFAULT_CHUNKER_SPEC);
const INDEX_KIND = 'vmdn.deb-index';

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

/** Which objects a .deb became, by its SHA-256: a side record, so a store without them only unpacks the .deb again. */
const RECORD_KIND = 'packages';
const recordKey = (sha256: string) => `${sha256}.json`;

async function cached(store: ReadableStore, rec: DebRecord): Promise<PackageRef | undefined> {
  if (!hasSideRecords(store)) return undefined;
  let ref: PackageRef;
  try {
    const bytes = await store.getRecord(RECORD_KIND, recordKey(rec.sha256));
    if (!bytes) return undefined;
    ref = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return undefined;
  }
  if (validatePackageRef(ref) || ref.sha256 !== rec.sha256 || ref.size !== rec.size) return undefined;
  // gc may have dropped objects no image used: then it is fetched again
  for (const d of packageObjects(ref)) if (!(await store.has(d))) return undefined;
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
export async function ingredient(store: WritableStore, rec: DebRecord, opts: { debCache?: string; signal?: AbortSignal; onAdded?: (d: Digest) => void }): Promise<Ingredient> {
  const have = await cached(store, rec);
  if (have) return { ref: have, files: decodeDebIndex(await store.get(have.index, { signal: opts.signal })), fetched: 0 };
  const dir = opts.debCache ?? path.join(os.tmpdir(), `vmdn-debs-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  const hadCopy = opts.debCache !== undefined && fs.existsSync(path.join(dir, `${rec.sha256}.deb`));
  const file = await fetchDeb(rec, dir, opts.signal);
  try {
    // one pass over the data member: cut and stored as chunks, and indexed file by file
    const tar = new TarChunks(TAR_CHUNKER, DEFAULT_MIN_FILE, store, { signal: opts.signal, onAdded: opts.onAdded });
    const pass = new PassThrough();
    const indexing = indexTar(readTar(pass, file), file);
    indexing.catch(() => pass.destroy());
    for await (const b of dpkgTar(file, opts.signal)) {
      await tar.push(b);
      if (!pass.write(b)) await drained(pass);
    }
    pass.end();
    const files = await indexing;
    const chunks = await tar.finish();
    if (tar.length === 0) throw new VmdnError('E_FORMAT', `${rec.name} ${rec.version}: empty data member`, { package: rec.name });
    const idx = await store.put(encodeDebIndex(files), { signal: opts.signal });
    if (idx.added) opts.onAdded?.(idx.digest);
    const ref: PackageRef = { name: rec.name, version: rec.version, arch: rec.arch, sha256: rec.sha256, size: rec.size, tarSize: tar.length, tar: chunks, index: idx.digest };
    if (hasSideRecords(store)) await store.putRecord(RECORD_KIND, recordKey(rec.sha256), Buffer.from(JSON.stringify(ref)));
    return { ref, files, fetched: hadCopy ? 0 : rec.size };
  } finally {
    if (!opts.debCache) await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** A stored package's data member as a tar byte stream, every chunk verified by the store. */
export async function* storedTar(ref: PackageRef, store: ReadableStore, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const reader = new StreamReader(ref.tar, store, signal);
  const BLOCK = 1 << 20;
  for (let off = 0; off < ref.tarSize; off += BLOCK) yield await reader.read(off, Math.min(BLOCK, ref.tarSize - off));
}
