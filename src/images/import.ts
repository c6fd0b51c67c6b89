/** `vmdn import`: an image file into a store under NAME:TAG, by the strategy asked for. */
import { openDisk } from '../container/open.js';
import { asWriter, type ImageStore } from '../store/types.js';
import { sha256, type Digest } from '../store/digest.js';
import { formatImageRef, type ImageRef } from '../store/image-name.js';
import { encodeManifest } from '../model/manifest.js';
import type { ChunkImportStats } from '../strategy/chunks/import.js';
import type { PackagesReport } from '../strategy/packages/match.js';
import { strategyNamed } from '../strategy/registry.js';
import type { StrategyImportOptions, StrategyName } from '../strategy/strategy.js';
import { nameImage } from './names.js';

export interface ImportResult {
  ref: string;
  manifest: Digest;
  stats: ChunkImportStats;
  /** What the strategy understood per volume. */
  notes: string[];
  /** Packages strategy: what came from packages, per filesystem. */
  packages?: Array<{ index: number } & PackagesReport>;
}

export type ImportOptions = Omit<StrategyImportOptions, 'onAdded'> & { strategy?: StrategyName };

/** Holds the store's writer lease throughout: gc must not delete what the import deduplicates against before the name keeps it. */
export async function importImageFile(store: ImageStore & { delete(d: Digest): Promise<void> }, file: string, ref: ImageRef, opts: ImportOptions): Promise<ImportResult> {
  return asWriter(store, () => importLeased(store, file, ref, opts), opts.signal);
}

async function importLeased(store: ImageStore & { delete(d: Digest): Promise<void> }, file: string, ref: ImageRef, opts: ImportOptions): Promise<ImportResult> {
  const strategy = strategyNamed(opts.strategy ?? 'chunks');
  const disk = await openDisk(file);
  const added: Digest[] = [];
  try {
    // recorded so that a failure takes back out what this import added
    const r = await strategy.import(disk, store, { ...opts, onAdded: (d) => added.push(d) });
    const bytes = encodeManifest(r.manifest);
    const digest = sha256(bytes);
    await store.put(bytes, { digest });
    // references by the one walk every reader uses (not the strategy's own list): gc keeps exactly what export needs
    await nameImage(store, ref, digest, r.manifest, undefined, r.stats.dataBytes);
    return { ref: formatImageRef(ref), manifest: digest, stats: r.stats, notes: r.notes, ...(r.packages ? { packages: r.packages } : {}) };
  } catch (err) {
    for (const d of added) await store.delete(d).catch(() => {});
    throw err;
  } finally {
    await disk.close();
  }
}
