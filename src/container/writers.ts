/** Output containers: which format a file name asks for, and a writer for it ("-": stdout, where the format streams). */
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { DiskWriter } from './disk.js';
import { createRawWriter } from './raw-writer.js';
import { createQcow2Writer } from './qcow2/writer.js';
import { createDynamicVhdWriter, createFixedVhdWriter, fixedVhdTrailer } from './vhd/writer.js';
import { createVdiWriter } from './vdi/writer.js';
import { createVhdxWriter } from './vhdx/writer.js';
import { createStreamWriter } from './stream-writer.js';
import { createVmdkWriter, STDOUT } from './vmdk/writer.js';
import { createStreamOptimizedWriter } from './vmdk/stream-writer.js';
import { streamSink } from './vmdk/sink.js';
import { VmdnError } from '../errors.js';

/**
 * vhd: dynamic VHD; vhd-fixed: fixed VHD (what Azure takes); vmdk:
 * streamOptimized (compressed, streamable: the OVA flavour); vmdk-sparse:
 * monolithicSparse; vhdx: dynamic VHDX.
 */
export const OUTPUT_FORMATS = ['raw', 'qcow2', 'vmdk', 'vmdk-sparse', 'vhd', 'vhd-fixed', 'vhdx', 'vdi'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
/** Formats written front to back with nothing to patch afterwards: the only ones that can go to a pipe. */
export const STREAMABLE: readonly OutputFormat[] = ['vmdk', 'raw', 'vhd-fixed'];
const BY_EXTENSION: Record<string, OutputFormat> = { '.raw': 'raw', '.img': 'raw', '.qcow2': 'qcow2', '.vmdk': 'vmdk', '.vhd': 'vhd', '.vhdx': 'vhdx', '.vdi': 'vdi' };

export function formatFromPath(out: string, explicit?: string): OutputFormat {
  // stdout has no extension: the compact streamable format is the default there
  const f = explicit ?? (out === STDOUT ? 'vmdk' : BY_EXTENSION[path.extname(out).toLowerCase()]);
  if ((OUTPUT_FORMATS as readonly string[]).includes(f as string)) return f as OutputFormat;
  if (f === undefined) {
    throw new VmdnError('E_USAGE', `cannot tell the output format from "${path.basename(out)}": use a .raw/.img/.qcow2/.vmdk/.vhd/.vhdx/.vdi name or --format`, { out });
  }
  throw new VmdnError('E_USAGE', `unknown format "${f}" (use ${OUTPUT_FORMATS.join(', ')})`, { format: f });
}

export async function openWriter(out: string, virtualSize: number, format: OutputFormat, compress?: 'zstd' | 'deflate'): Promise<DiskWriter> {
  if (compress && format !== 'qcow2') throw new VmdnError('E_USAGE', '--compress applies to qcow2 output only (vmdk is always deflate-compressed, vmdk-sparse never)');
  if (out === STDOUT) {
    if (!STREAMABLE.includes(format)) {
      throw new VmdnError('E_USAGE', `${format} cannot be written to a pipe (its tables precede the data and are only known at the end); write to a file, or use ${STREAMABLE.join(', ')}`, { format });
    }
    if (format === 'vmdk') return createVmdkWriter(out, virtualSize, 'streamOptimized');
    return openStreamWriter(process.stdout, virtualSize, format, 'stdout');
  }
  switch (format) {
    case 'raw': return createRawWriter(out, virtualSize);
    case 'qcow2': return createQcow2Writer(out, virtualSize, { compress: compress ?? false });
    case 'vmdk': return createVmdkWriter(out, virtualSize, 'streamOptimized');
    case 'vmdk-sparse': return createVmdkWriter(out, virtualSize, 'monolithicSparse');
    case 'vhd': return createDynamicVhdWriter(out, virtualSize);
    case 'vhd-fixed': return createFixedVhdWriter(out, virtualSize);
    case 'vhdx': return createVhdxWriter(out, virtualSize);
    case 'vdi': return createVdiWriter(out, virtualSize);
  }
}

/** A STREAMABLE format written front to back into `out` (a pipe, an HTTP response); `name` labels errors and the VMDK descriptor. */
export function openStreamWriter(out: Writable, virtualSize: number, format: OutputFormat, name: string): Promise<DiskWriter> {
  if (!STREAMABLE.includes(format)) throw new VmdnError('E_USAGE', `${format} cannot be written as a stream`, { format });
  if (format === 'vmdk') return createStreamOptimizedWriter(streamSink(out, name), virtualSize, name);
  return Promise.resolve(createStreamWriter(out, virtualSize, format === 'vhd-fixed' ? fixedVhdTrailer(virtualSize) : undefined));
}

/** Bytes a STREAMABLE format's output will have, known before it is written; undefined when only the end tells (compressed VMDK). */
export function streamedSize(virtualSize: number, format: OutputFormat): number | undefined {
  if (format === 'raw') return virtualSize;
  if (format === 'vhd-fixed') {
    const t = fixedVhdTrailer(virtualSize);
    return t.at + t.bytes.length;
  }
  return undefined;
}
