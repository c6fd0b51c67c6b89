/** The files strategy: ext2/3/4 as creation parameters plus the file tree (faithful at the file layer); the rest stays chunks. */
import type { Manifest } from '../../model/manifest.js';
import { DEFAULT_MIN_FILE } from '../defaults.js';
import type { Strategy, StrategyExportOptions } from '../strategy.js';
import type { DiskWriter } from '../../container/disk.js';
import type { ReadableStore } from '../../store/types.js';
import { importFiles } from './import.js';
import { exportFiles } from './export.js';

/** Files and packages images are rebuilt alike: a tree entry from a package is unpacked from it. */
export async function exportRebuilt(m: Manifest, store: ReadableStore, writer: DiskWriter, opts: StrategyExportOptions): Promise<{ bytesWritten: number }> {
  return exportFiles(m, store, writer, opts).catch(async (err) => {
    await writer.abort().catch(() => {});
    throw err;
  });
}

export const filesStrategy: Strategy = {
  name: 'files',
  rebuilds: (m: Manifest) => !!m.filesystems?.length,
  import: (disk, store, opts) =>
    importFiles(disk, store, { chunker: opts.chunker, minFile: opts.cuts?.minFile ?? DEFAULT_MIN_FILE, signal: opts.signal, onProgress: opts.onProgress, onAdded: opts.onAdded }),
  export: exportRebuilt,
};
