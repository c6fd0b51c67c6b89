/** `vmdn export`: a stored image into an image file, rebuilt by the strategy that made it. */
import path from 'node:path';
import type { DiskWriter } from '../container/disk.js';
import { formatFromPath, openWriter, type OutputFormat } from '../container/writers.js';
import type { ImageNames, ReadableStore } from '../store/types.js';
import { formatImageRef, type ImageRef } from '../store/image-name.js';
import type { Manifest } from '../model/manifest.js';
import { strategyFor } from '../strategy/registry.js';
import type { StrategyExportOptions } from '../strategy/strategy.js';
import { resolveImage } from './names.js';
import { exportOva } from './export-ova.js';
import { VmdnError } from '../errors.js';

/** The whole disk of `manifest` into `writer` (finished, or aborted on error). */
export function writeImage(manifest: Manifest, store: ReadableStore, writer: DiskWriter, opts: StrategyExportOptions): Promise<{ bytesWritten: number }> {
  return strategyFor(manifest).export(manifest, store, writer, opts);
}

export async function exportImageFile(
  store: ReadableStore & { names: ImageNames },
  ref: ImageRef,
  out: string,
  opts: { format?: string; compress?: 'zstd' | 'deflate'; signal?: AbortSignal; onProgress?: StrategyExportOptions['onProgress']; addDisks?: ImageRef[] },
): Promise<{ ref: string; out: string; format: OutputFormat | 'ova'; virtualSize: number; bytesWritten: number }> {
  // an OVA is an archive of disk images, not a DiskWriter format: assembled in export-ova.ts
  if (opts.format === 'ova' || (opts.format === undefined && /\.ova$/i.test(out))) {
    if (opts.compress) throw new VmdnError('E_USAGE', '--compress applies to qcow2 output only (an OVA\'s disks are always deflate-compressed VMDK)');
    return exportOva(store, [ref, ...(opts.addDisks ?? [])], out, opts);
  }
  if (opts.addDisks?.length) throw new VmdnError('E_USAGE', '--add-disk applies to OVA output only', { format: opts.format });
  const format = formatFromPath(out, opts.format);
  const { manifest } = await resolveImage(store, ref);
  const writer = await openWriter(out, manifest.virtualSize, format, opts.compress);
  const { bytesWritten } = await writeImage(manifest, store, writer, { signal: opts.signal, onProgress: opts.onProgress, workDir: path.dirname(path.resolve(out)) });
  return { ref: formatImageRef(ref), out, format, virtualSize: manifest.virtualSize, bytesWritten };
}
