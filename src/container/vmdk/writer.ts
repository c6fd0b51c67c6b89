/** VMDK output: streamOptimized (`vmdk`, to a file or to stdout as `-`) or monolithicSparse (`vmdk-sparse`). */
import path from 'node:path';
import type { DiskWriter } from '../disk.js';
import { createStreamOptimizedWriter } from './stream-writer.js';
import { createMonolithicSparseWriter } from './sparse-writer.js';
import { fileSink, streamSink } from './sink.js';

export type VmdkSubformat = 'streamOptimized' | 'monolithicSparse';

/** The name `-` means standard output. */
export const STDOUT = '-';

export async function createVmdkWriter(out: string, virtualSize: number, subformat: VmdkSubformat): Promise<DiskWriter> {
  if (subformat === 'monolithicSparse') return createMonolithicSparseWriter(out, virtualSize, path.basename(out));
  if (out === STDOUT) return createStreamOptimizedWriter(streamSink(process.stdout, 'stdout'), virtualSize, 'disk.vmdk');
  return createStreamOptimizedWriter(await fileSink(out), virtualSize, path.basename(out));
}
