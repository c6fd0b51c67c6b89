/** Output containers: which format a file name asks for, and a writer for it. */
import path from 'node:path';
import type { DiskWriter } from './disk.js';
import { createRawWriter } from './raw-writer.js';
import { createQcow2Writer } from './qcow2/writer.js';
import { VmdnError } from '../errors.js';

export type OutputFormat = 'raw' | 'qcow2';

export function formatFromPath(out: string, explicit?: string): OutputFormat {
  const ext = path.extname(out).toLowerCase();
  const f = explicit ?? (ext === '.qcow2' ? 'qcow2' : ['.raw', '.img'].includes(ext) ? 'raw' : undefined);
  if (f === 'raw' || f === 'qcow2') return f;
  if (f === undefined) throw new VmdnError('E_USAGE', `cannot tell the output format from "${path.basename(out)}": use a .raw/.img/.qcow2 name or --format`, { out });
  throw new VmdnError('E_USAGE', `unknown format "${f}" (use raw or qcow2)`, { format: f });
}

export async function openWriter(out: string, virtualSize: number, format: OutputFormat, compress?: 'zstd' | 'deflate'): Promise<DiskWriter> {
  if (format === 'raw') {
    if (compress) throw new VmdnError('E_USAGE', '--compress applies to qcow2 output only');
    return createRawWriter(out, virtualSize);
  }
  return createQcow2Writer(out, virtualSize, { compress: compress ?? false });
}
