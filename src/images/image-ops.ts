/**
 * Named-image operations on a local store: import a file under name:tag,
 * resolve a name to its manifest, export it as a file. The CLI and the demo
 * are thin shells around these.
 */
import path from 'node:path';
import { openDisk } from '../container/open.js';
import { createRawWriter } from '../container/raw-writer.js';
import { createQcow2Writer } from '../container/qcow2/writer.js';
import type { DiskWriter } from '../container/disk.js';
import type { LocalStore } from '../store/local/local-store.js';
import type { ReadableStore } from '../store/types.js';
import { sha256, type Digest } from '../store/digest.js';
import { formatImageRef, type ImageRef } from '../store/image-name.js';
import { importChunks, type ChunkImportStats } from '../strategy/chunks/import.js';
import { assembleChunks } from '../strategy/chunks/export.js';
import { decodeManifest, encodeManifest, uniqueChunks, type CutsBy, type Manifest } from '../model/manifest.js';
import { fileAwareLayout, type ChunkLayout } from '../strategy/chunks/file-layout.js';
import { importFiles } from '../strategy/files/import.js';
import { preparePackages, type PackagesOptions, type PackagesReport } from '../strategy/packages/match.js';
import { exportFiles } from '../strategy/files/export.js';
import type { Disk } from '../container/disk.js';
import type { ChunkerParams } from '../strategy/chunker.js';
import type { OnProgress } from '../util/progress.js';
import { VmdnError } from '../errors.js';

export interface ImportResult {
  ref: string;
  manifest: Digest;
  stats: ChunkImportStats;
  /** What the file-aware layout understood per volume. */
  notes: string[];
  /** Packages strategy: what came from packages, per filesystem. */
  packages?: Array<{ index: number } & PackagesReport>;
}

export type Strategy = 'chunks' | 'files' | 'packages';

/** Chunk boundaries: over the disk alone, or also along file data (optionally dropping unused blocks). */
export interface CutsOptions {
  by: 'disk' | 'files';
  minFile?: number;
  sparsify?: boolean;
}

import { DEFAULT_MIN_FILE } from '../strategy/defaults.js';
export { DEFAULT_MIN_FILE };

/** The layout for importChunks, and what to record in the manifest so seeds are cut alike. */
export async function planCuts(disk: Disk, cuts: CutsOptions | CutsBy | undefined, signal?: AbortSignal): Promise<{ layout?: ChunkLayout; cutsBy?: CutsBy; notes: string[] }> {
  if (!cuts || cuts.by === 'disk') {
    if (cuts?.sparsify) throw new VmdnError('E_USAGE', '--sparsify needs file-aware cuts (--cuts files)');
    return { notes: [] };
  }
  const cutsBy: CutsBy = { by: 'files', minFile: cuts.minFile ?? DEFAULT_MIN_FILE, sparsify: cuts.sparsify ?? false };
  const layout = await fileAwareLayout(disk, { minFile: cutsBy.minFile, sparsify: cutsBy.sparsify, signal });
  return { layout, cutsBy, notes: layout.notes };
}

type ImportOptions = { chunker: ChunkerParams; strategy?: Strategy; cuts?: CutsOptions; packages?: Omit<PackagesOptions, 'signal' | 'onAdded'>; signal?: AbortSignal; onProgress?: OnProgress };

/** Holds the store's writer lease throughout: gc must not delete what the import deduplicates against before the name keeps it. */
export async function importImageFile(store: LocalStore, file: string, ref: ImageRef, opts: ImportOptions): Promise<ImportResult> {
  return store.writing(() => importLeased(store, file, ref, opts), opts.signal);
}

async function importLeased(store: LocalStore, file: string, ref: ImageRef, opts: ImportOptions): Promise<ImportResult> {
  const disk = await openDisk(file);
  const added: Digest[] = [];
  // recorded so that a failure takes back out what this import added
  const onAdded = (d: Digest) => added.push(d);
  try {
    let manifest: Manifest;
    let stats: ChunkImportStats;
    let refs: Iterable<Digest>;
    let notes: string[];
    let packages: ImportResult['packages'];
    if (opts.strategy === 'files' || opts.strategy === 'packages') {
      const pk = opts.strategy === 'packages' ? { fallback: 'files' as const, ...opts.packages, signal: opts.signal, onAdded } : undefined;
      const r = await importFiles(disk, store, {
        chunker: opts.chunker, minFile: opts.cuts?.minFile ?? DEFAULT_MIN_FILE, signal: opts.signal, onProgress: opts.onProgress, onAdded,
        ...(pk ? { packages: (fs) => preparePackages(fs, store, pk) } : {}),
      });
      ({ manifest, stats, refs, notes, packages } = r);
    } else {
      const planned = await planCuts(disk, opts.cuts, opts.signal);
      ({ manifest, stats } = await importChunks(disk, store, { ...planned, chunker: opts.chunker, signal: opts.signal, onProgress: opts.onProgress, onAdded }));
      refs = uniqueChunks(manifest).keys();
      notes = planned.notes;
    }
    const bytes = encodeManifest(manifest);
    const digest = sha256(bytes);
    await store.put(bytes, { digest });
    store.index.putImage(
      {
        ...ref,
        manifest: digest,
        created: new Date().toISOString(),
        virtualSize: manifest.virtualSize,
        allocatedSize: manifest.allocated,
        dataSize: stats.dataBytes,
        format: manifest.source.format,
      },
      [...refs, digest],
    );
    return { ref: formatImageRef(ref), manifest: digest, stats, notes, ...(packages ? { packages } : {}) };
  } catch (err) {
    for (const d of added) await store.delete(d).catch(() => {});
    throw err;
  } finally {
    await disk.close();
  }
}

export async function loadManifest(store: ReadableStore, digest: Digest): Promise<Manifest> {
  return decodeManifest(await store.get(digest), `object ${digest.slice(0, 12)}`);
}

export async function resolveImage(store: LocalStore, ref: ImageRef): Promise<{ digest: Digest; manifest: Manifest }> {
  const row = store.index.getImage(ref.name, ref.tag);
  if (!row) throw new VmdnError('E_NOT_FOUND', `no image ${formatImageRef(ref)} in store ${store.dir}`, { ref: formatImageRef(ref) });
  return { digest: row.manifest, manifest: await loadManifest(store, row.manifest) };
}

export type OutputFormat = 'raw' | 'qcow2';

export function formatFromPath(out: string, explicit?: string): OutputFormat {
  const f = explicit ?? (path.extname(out).toLowerCase() === '.qcow2' ? 'qcow2' : ['.raw', '.img'].includes(path.extname(out).toLowerCase()) ? 'raw' : undefined);
  if (f === 'raw' || f === 'qcow2') return f;
  if (f === undefined) throw new VmdnError('E_USAGE', `cannot tell the output format from "${path.basename(out)}": use a .raw/.img/.qcow2 name or --format`, { out });
  throw new VmdnError('E_USAGE', `unknown format "${f}" (use raw or qcow2)`, { format: f });
}

export async function openWriter(out: string, virtualSize: number, format: OutputFormat, compress?: 'zstd' | 'deflate'): Promise<DiskWriter> {
  if (format === 'raw') {
    if (compress) throw new VmdnError('E_USAGE', '--compress applies to qcow2 output only');
    return createRawWriter(out, virtualSize);
  }
  return createQcow2Writer(out, virtualSize, { compress: compress ?? false });
}

export async function exportImageFile(
  store: LocalStore,
  ref: ImageRef,
  out: string,
  opts: { format?: string; compress?: 'zstd' | 'deflate'; signal?: AbortSignal; onProgress?: OnProgress },
): Promise<{ ref: string; out: string; format: OutputFormat; virtualSize: number; bytesWritten: number }> {
  const format = formatFromPath(out, opts.format);
  const { manifest } = await resolveImage(store, ref);
  const writer = await openWriter(out, manifest.virtualSize, format, opts.compress);
  const { bytesWritten } = manifest.filesystems?.length
    ? await exportFiles(manifest, store, writer, { signal: opts.signal, onProgress: opts.onProgress, workDir: path.dirname(path.resolve(out)) }).catch(async (err) => {
        await writer.abort();
        throw err;
      })
    : await assembleChunks(manifest, store, writer, { signal: opts.signal, onProgress: opts.onProgress });
  return { ref: formatImageRef(ref), out, format, virtualSize: manifest.virtualSize, bytesWritten };
}
