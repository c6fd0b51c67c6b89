/** Output containers: which format a file name asks for, and a writer for it. */
import path from 'node:path';
import type { DiskWriter } from './disk.js';
import { createRawWriter } from './raw-writer.js';
import { createQcow2Writer } from './qcow2/writer.js';
import { createVmdkWriter, STDOUT } from './vmdk/writer.js';
import { VmdnError } from '../errors.js';

/** vmdk: streamOptimized (compressed, streamable: the OVA flavour); vmdk-sparse: monolithicSparse. */
export type OutputFormat = 'raw' | 'qcow2' | 'vmdk' | 'vmdk-sparse';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['raw', 'qcow2', 'vmdk', 'vmdk-sparse'];
/** Only a format written front to back without seeking can go to stdout (`-`). */
const STREAMABLE: readonly OutputFormat[] = ['vmdk'];

const BY_EXTENSION: Record<string, OutputFormat> = { '.qcow2': 'qcow2', '.raw': 'raw', '.img': 'raw', '.vmdk': 'vmdk' };

export function formatFromPath(out: string, explicit?: string): OutputFormat {
  // stdout has no extension: the one streamable format is the default there
  const f = explicit ?? (out === STDOUT ? 'vmdk' : BY_EXTENSION[path.extname(out).toLowerCase()]);
  if ((OUTPUT_FORMATS as readonly string[]).includes(f ?? '')) return f as OutputFormat;
  if (f === undefined) {
    throw new VmdnError('E_USAGE', `cannot tell the output format from "${path.basename(out)}": use a .raw/.img/.qcow2/.vmdk name or --format`, { out });
  }
  throw new VmdnError('E_USAGE', `unknown format "${f}" (use ${OUTPUT_FORMATS.join(', ')})`, { format: f });
}

export async function openWriter(out: string, virtualSize: number, format: OutputFormat, compress?: 'zstd' | 'deflate'): Promise<DiskWriter> {
  if (out === STDOUT && !STREAMABLE.includes(format)) {
    throw new VmdnError('E_USAGE', `${format} output cannot be streamed to stdout (only ${STREAMABLE.join(', ')} can)`, { format });
  }
  if (compress && format !== 'qcow2') throw new VmdnError('E_USAGE', '--compress applies to qcow2 output only (vmdk is always deflate-compressed, vmdk-sparse never)');
  if (format === 'raw') return createRawWriter(out, virtualSize);
  if (format === 'vmdk') return createVmdkWriter(out, virtualSize, 'streamOptimized');
  if (format === 'vmdk-sparse') return createVmdkWriter(out, virtualSize, 'monolithicSparse');
  return createQcow2Writer(out, virtualSize, { compress: compress ?? false });
}
