/** Open any supported image by content (never by file extension). */
import type { Disk } from './disk.js';
import { RawDisk } from './raw.js';
import { Qcow2Disk } from './qcow2/reader.js';
import { VhdDisk } from './vhd/reader.js';
import { VhdxDisk } from './vhdx/reader.js';
import { VdiDisk } from './vdi/reader.js';
import { VmdkDisk } from './vmdk/reader.js';
import { probeFormat, type ReadableFormat } from './probe.js';
import { asVmdnError } from '../errors.js';

export { probeFormat };
export type { ReadableFormat };

export interface OpenDiskOptions {
  /** Skip probing and open as this format (e.g. a raw image that happens to start with qcow2 magic). */
  readonly format?: ReadableFormat;
  /** Backing (qcow2) and parent (VHD, VHDX) files trusted outside an image's directory (default: the process's list, see qcow2/backing.ts). */
  readonly allowBacking?: readonly string[];
}

export async function openDisk(path: string, opts: OpenDiskOptions = {}): Promise<Disk> {
  try {
    const format = opts.format ?? (await probeFormat(path));
    switch (format) {
      case 'qcow2': return await Qcow2Disk.open(path, { allowBacking: opts.allowBacking });
      case 'vhd': return await VhdDisk.open(path, { allowBacking: opts.allowBacking });
      case 'vhdx': return await VhdxDisk.open(path, { allowBacking: opts.allowBacking });
      case 'vdi': return await VdiDisk.open(path);
      case 'vmdk': return await VmdkDisk.open(path);
      default: return await RawDisk.open(path);
    }
  } catch (err) {
    // File system errors (ENOENT, EACCES, ...) become E_NOT_FOUND / E_IO; anything else passes through untouched.
    if (typeof (err as NodeJS.ErrnoException)?.errno === 'number') throw asVmdnError(err);
    throw err;
  }
}
