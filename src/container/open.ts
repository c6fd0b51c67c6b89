/** Open any supported image by content (never by file extension). */
import type { Disk } from './disk.js';
import { RawDisk } from './raw.js';
import { Qcow2Disk } from './qcow2.js';
import { probeFormat, type ReadableFormat } from './probe.js';

export { probeFormat };
export type { ReadableFormat };

export interface OpenDiskOptions {
  /** Skip probing and open as this format (e.g. a raw image that happens to start with qcow2 magic). */
  readonly format?: ReadableFormat;
}

export async function openDisk(path: string, opts: OpenDiskOptions = {}): Promise<Disk> {
  const format = opts.format ?? (await probeFormat(path));
  return format === 'qcow2' ? Qcow2Disk.open(path) : RawDisk.open(path);
}
