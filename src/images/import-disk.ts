/** What one import makes: its options and result, and one disk into the store as a manifest (plain files and OVA disks alike). */
import type { Disk } from '../container/disk.js';
import type { ImageStore } from '../store/types.js';
import { sha256, type Digest } from '../store/digest.js';
import { encodeManifest, type Manifest } from '../model/manifest.js';
import type { ChunkImportStats } from '../strategy/chunks/import.js';
import type { PackagesReport } from '../strategy/packages/match.js';
import { strategyNamed } from '../strategy/registry.js';
import type { StrategyImportOptions, StrategyName } from '../strategy/strategy.js';

export interface ImportResult {
  ref: string;
  manifest: Digest;
  stats: ChunkImportStats;
  /** What the strategy understood per volume. */
  notes: string[];
  /** Packages strategy: what came from packages, per filesystem. */
  packages?: Array<{ index: number } & PackagesReport>;
  /** The file was compressed: how, and its decompressed size. */
  decompressed?: { compression: string; bytes: number };
  /** An OVA: its descriptor's object, and every image made (the first is the one above). */
  ovf?: Digest;
  images?: Array<{ ref: string; manifest: Digest; disk: number; member: string; stats: ChunkImportStats }>;
}

export type ImportOptions = Omit<StrategyImportOptions, 'onAdded'> & {
  strategy?: StrategyName;
  /** An OVA: import only this disk (1-based), under the name given. */
  disk?: number;
  /** Bound on a compressed file's decompressed size (default: container/compressed.ts). */
  maxSize?: number;
};

export type ImportStore = ImageStore & { delete(d: Digest): Promise<void>; tmpDir?: string };

/**
 * One disk into the store by the strategy asked for, its manifest (with
 * `extra` fields) stored; every object added is recorded in `added`, so
 * the caller can take them back out if the import fails later.
 */
export async function importDisk(store: ImportStore, disk: Disk, opts: ImportOptions, added: Digest[], extra: Partial<Manifest> = {}) {
  const strategy = strategyNamed(opts.strategy ?? 'chunks');
  const r = await strategy.import(disk, store, { ...opts, onAdded: (d) => added.push(d) });
  const manifest: Manifest = { ...r.manifest, ...extra };
  const bytes = encodeManifest(manifest);
  const digest = sha256(bytes);
  if ((await store.put(bytes, { digest })).added) added.push(digest);
  return { r, manifest, digest };
}
