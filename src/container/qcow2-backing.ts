/**
 * Opening the backing file named by a qcow2 header. Names are resolved
 * relative to the directory of the image that names them (as qemu does);
 * loops are detected on real paths, so symlinks and "../x/./a" spellings of
 * the same file are caught; the chain depth is capped.
 */
import fs from 'node:fs/promises';
import nodePath from 'node:path';
import type { Disk } from './disk.js';
import { RawDisk } from './raw.js';
import { probeFormat } from './probe.js';
import { MAX_BACKING_DEPTH } from './qcow2-layout.js';
import { VmdnError } from '../errors.js';

export type OpenQcow2 = (path: string, opts: { chain: readonly string[] }) => Promise<Disk>;

function backingError(parent: string, msg: string, data: Record<string, unknown> = {}, cause?: unknown): VmdnError {
  return new VmdnError('E_BACKING', `${parent}: ${msg}`, { path: parent, ...data }, { cause });
}

/**
 * Open `name`, the backing file of `parent`. `chain` holds the real paths of
 * the images above `parent`; `openQcow2` is passed in to avoid an import cycle.
 */
export async function openBacking(
  parent: string,
  name: string,
  format: string | null,
  chain: readonly string[],
  openQcow2: OpenQcow2,
): Promise<Disk> {
  // qemu protocol syntax (json:{...}, nbd://, http://) would need network or option parsing; refuse it.
  if (name.startsWith('json:') || /^[a-z][a-z0-9+.-]*:\/\//i.test(name)) {
    throw new VmdnError('E_UNSUPPORTED', `${parent}: backing file "${name}" uses a qemu protocol, only local files are supported`, { path: parent });
  }
  const below = [...chain, await fs.realpath(parent)];
  if (below.length > MAX_BACKING_DEPTH) {
    throw backingError(parent, `backing chain is deeper than ${MAX_BACKING_DEPTH} images`, { depth: below.length });
  }
  const file = nodePath.resolve(nodePath.dirname(parent), name);
  let real: string;
  try {
    real = await fs.realpath(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw backingError(parent, `backing file ${file} ${code === 'ENOENT' ? 'does not exist' : `cannot be opened (${code})`}`, { backing: file }, err);
  }
  if (below.includes(real)) throw backingError(parent, `backing chain loops back to ${real}`, { backing: file });
  const st = await fs.stat(real);
  if (!st.isFile() && !st.isBlockDevice()) throw backingError(parent, `backing file ${file} is not a regular file`, { backing: file });

  let fmt = format;
  try {
    fmt ??= await probeFormat(file);
    if (fmt === 'qcow2') return await openQcow2(file, { chain: below });
    if (fmt === 'raw') return await RawDisk.open(file);
  } catch (err) {
    // Keep the inner code (E_TRUNCATED in a backing file is still a truncation) but say where it happened.
    if (err instanceof VmdnError) {
      if (err.code === 'E_BACKING') throw err;
      throw new VmdnError(err.code, `backing file of ${parent}: ${err.message}`, { ...err.data, parent }, { cause: err });
    }
    throw backingError(parent, `cannot open backing file ${file}: ${(err as Error).message}`, { backing: file }, err);
  }
  throw new VmdnError('E_UNSUPPORTED', `${parent}: backing format "${fmt}" is not supported`, { path: parent, format: fmt });
}
