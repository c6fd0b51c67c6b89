/**
 * `vmdn import`: an image file into a store under NAME:TAG, by the strategy
 * asked for. A compressed file (gz, xz, zst, bz2) is decompressed into the
 * store's tmp dir first; an OVA gives one image per disk (images/import-ova.ts).
 */
import os from 'node:os';
import { openDisk } from '../container/open.js';
import { decompressToTemp, probeCompression } from '../container/compressed.js';
import { looksLikeTar } from '../container/ova/archive.js';
import { openImageFile } from '../container/image-file.js';
import type { Digest } from '../store/digest.js';
import { asWriter } from '../store/types.js';
import { formatImageRef, type ImageRef } from '../store/image-name.js';
import { VmdnError } from '../errors.js';
import { nameImage } from './names.js';
import { importOva } from './import-ova.js';
import { importDisk, type ImportOptions, type ImportResult, type ImportStore } from './import-disk.js';

export type { ImportResult, ImportOptions, ImportStore };

/** Holds the store's writer lease throughout: gc must not delete what the import deduplicates against before the name keeps it. */
export async function importImageFile(store: ImportStore, file: string, ref: ImageRef, opts: ImportOptions): Promise<ImportResult> {
  return asWriter(store, () => importLeased(store, file, ref, opts), opts.signal);
}

async function isTar(file: string): Promise<boolean> {
  const { fh, size } = await openImageFile(file);
  try {
    if (size < 1024) return false;
    const head = Buffer.alloc(512);
    await fh.read(head, 0, 512, 0);
    return looksLikeTar(head);
  } finally {
    await fh.close();
  }
}

async function importLeased(store: ImportStore, file: string, ref: ImageRef, opts: ImportOptions): Promise<ImportResult> {
  const kind = await probeCompression(file).catch(() => undefined);
  if (!kind) return importPlain(store, file, ref, opts);
  // the temp file lives in the store (same file system as its objects, removed by gc if we die)
  const tmpDir = store.tmpDir ?? os.tmpdir();
  const d = await decompressToTemp(file, kind, tmpDir, { maxBytes: opts.maxSize, signal: opts.signal });
  try {
    const r = await importPlain(store, d.path, ref, opts);
    return { ...r, decompressed: { compression: kind, bytes: d.bytes }, notes: [`decompressed ${kind}: ${d.bytes} bytes`, ...r.notes] };
  } finally {
    await d.remove();
  }
}

async function importPlain(store: ImportStore, file: string, ref: ImageRef, opts: ImportOptions): Promise<ImportResult> {
  if (await isTar(file).catch(() => false)) return importOva(store, file, ref, opts);
  if (opts.disk !== undefined) throw new VmdnError('E_USAGE', '--disk applies to OVA files only', { disk: opts.disk });
  const disk = await openDisk(file);
  const added: Digest[] = [];
  try {
    const one = await importDisk(store, disk, opts, added);
    await nameImage(store, ref, one.digest, one.manifest, undefined, one.r.stats.dataBytes);
    return { ref: formatImageRef(ref), manifest: one.digest, stats: one.r.stats, notes: one.r.notes, ...(one.r.packages ? { packages: one.r.packages } : {}) };
  } catch (err) {
    for (const d of added) await store.delete(d).catch(() => {});
    throw err;
  } finally {
    await disk.close();
  }
}
