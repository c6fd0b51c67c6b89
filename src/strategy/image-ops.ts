/**
 * Named-image operations on a local store: import a file under name:tag,
 * resolve a name to its manifest, export it as a file. The CLI and the demo
 * are thin shells around these.
 */
import path from 'node:path';
import { openDisk } from '../container/open.js';
import { createRawWriter } from '../container/raw-writer.js';
import { createQcow2Writer } from '../container/qcow2-writer.js';
import type { DiskWriter } from '../container/disk.js';
import type { LocalStore } from '../store/local-store.js';
import type { ReadableStore } from '../store/types.js';
import { sha256, type Digest } from '../store/digest.js';
import { formatImageRef, type ImageRef } from '../store/image-name.js';
import { importChunks, type ChunkImportStats } from './chunks-import.js';
import { assembleChunks } from './chunks-export.js';
import { decodeManifest, encodeManifest, uniqueChunks, type Manifest } from './manifest.js';
import type { ChunkerParams } from './chunker.js';
import type { OnProgress } from '../util/progress.js';
import { VmdnError } from '../errors.js';

export interface ImportResult {
  ref: string;
  manifest: Digest;
  stats: ChunkImportStats;
}

export async function importImageFile(
  store: LocalStore,
  file: string,
  ref: ImageRef,
  opts: { chunker: ChunkerParams; signal?: AbortSignal; onProgress?: OnProgress },
): Promise<ImportResult> {
  const disk = await openDisk(file);
  const added: Digest[] = [];
  try {
    const { manifest, stats } = await importChunks(disk, store, {
      chunker: opts.chunker,
      signal: opts.signal,
      onProgress: opts.onProgress,
      // recorded so that a failure takes back out what this import added
      onAdded: (d) => added.push(d),
    });
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
      [...uniqueChunks(manifest).keys(), digest],
    );
    return { ref: formatImageRef(ref), manifest: digest, stats };
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
  const { bytesWritten } = await assembleChunks(manifest, store, writer, { signal: opts.signal, onProgress: opts.onProgress });
  return { ref: formatImageRef(ref), out, format, virtualSize: manifest.virtualSize, bytesWritten };
}
