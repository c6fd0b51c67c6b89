/**
 * What a strategy is: one way to keep a disk as objects ("what is a copy?").
 * Each strategy lives in its own folder (chunks/, files/, packages/) and is
 * registered once in registry.ts; import and export pick it there, so adding
 * one is a folder and a line. The objects an image needs are not a strategy's
 * business: model/objects.ts walks every manifest the same way.
 */
import type { Disk, DiskWriter } from '../container/disk.js';
import type { Digest } from '../store/digest.js';
import type { ReadableStore, WritableStore } from '../store/types.js';
import type { CutsBy, Manifest } from '../model/manifest.js';
import type { ChunkImportStats } from './chunks/import.js';
import type { ChunkerParams } from './chunker.js';
import type { PackagesOptions, PackagesReport } from './packages/match.js';
import type { OnProgress } from '../util/progress.js';

export type StrategyName = 'chunks' | 'files' | 'packages';

/** Chunk boundaries: over the disk alone, or also along file data (optionally dropping unused blocks). */
export interface CutsOptions {
  by: 'disk' | 'files';
  minFile?: number;
  sparsify?: boolean;
}

export interface StrategyImportOptions {
  chunker: ChunkerParams;
  cuts?: CutsOptions | CutsBy;
  packages?: Omit<PackagesOptions, 'signal' | 'onAdded'>;
  signal?: AbortSignal;
  onProgress?: OnProgress;
  /** Called for each object the import adds (so a failed import can take them back out). */
  onAdded: (d: Digest) => void;
}

export interface StrategyImport {
  manifest: Manifest;
  stats: ChunkImportStats;
  /** What the strategy understood or left alone, per volume. */
  notes: string[];
  packages?: Array<{ index: number } & PackagesReport>;
}

export interface StrategyExportOptions {
  signal?: AbortSignal;
  onProgress?: OnProgress;
  /** Where a strategy may build things on disk (near the output: same filesystem). */
  workDir?: string;
}

export interface Strategy {
  readonly name: StrategyName;
  /** Whether a stored manifest is rebuilt by this strategy (the registry asks the most specific first). */
  rebuilds(m: Manifest): boolean;
  import(disk: Disk, store: WritableStore, opts: StrategyImportOptions): Promise<StrategyImport>;
  /** Writes the whole disk into `writer` and finishes it (aborts it on error). */
  export(m: Manifest, store: ReadableStore, writer: DiskWriter, opts: StrategyExportOptions): Promise<{ bytesWritten: number }>;
}
