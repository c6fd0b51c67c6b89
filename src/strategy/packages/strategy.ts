/**
 * The packages strategy: the files strategy, where a file that is an unmodified
 * file of an installed package is a reference to that package (kept once for
 * every image) instead of content of its own.
 */
import type { Manifest } from '../../model/manifest.js';
import { DEFAULT_MIN_FILE } from '../defaults.js';
import type { Strategy } from '../strategy.js';
import { importFiles } from '../files/import.js';
import { exportRebuilt } from '../files/strategy.js';
import { preparePackages } from './match.js';

export const packagesStrategy: Strategy = {
  name: 'packages',
  rebuilds: (m: Manifest) => !!m.filesystems?.some((f) => f.packages?.length),
  import(disk, store, opts) {
    const pk = { fallback: 'files' as const, ...opts.packages, signal: opts.signal, onAdded: opts.onAdded };
    return importFiles(disk, store, {
      chunker: opts.chunker, minFile: opts.cuts?.minFile ?? DEFAULT_MIN_FILE, signal: opts.signal, onProgress: opts.onProgress, onAdded: opts.onAdded,
      packages: (fs) => preparePackages(fs, store, pk),
    });
  },
  export: exportRebuilt,
};
