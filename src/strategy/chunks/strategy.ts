/** The chunks strategy: the disk as content-defined chunks, bit-exact (faithful at the disk layer). */
import type { Disk } from '../../container/disk.js';
import type { CutsBy, Manifest } from '../../model/manifest.js';
import { VmdnError } from '../../errors.js';
import { DEFAULT_MIN_FILE } from '../defaults.js';
import type { CutsOptions, Strategy } from '../strategy.js';
import { importChunks } from './import.js';
import { assembleChunks } from './export.js';
import { fileAwareLayout, type ChunkLayout } from './file-layout.js';

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

export const chunksStrategy: Strategy = {
  name: 'chunks',
  rebuilds: (m: Manifest) => !m.filesystems?.length,
  async import(disk, store, opts) {
    const planned = await planCuts(disk, opts.cuts, opts.signal);
    const { manifest, stats } = await importChunks(disk, store, { ...planned, chunker: opts.chunker, signal: opts.signal, onProgress: opts.onProgress, onAdded: opts.onAdded });
    return { manifest, stats, notes: planned.notes };
  },
  export: (m, store, writer, opts) => assembleChunks(m, store, writer, { signal: opts.signal, onProgress: opts.onProgress }),
};
