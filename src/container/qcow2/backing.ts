/**
 * Opening the backing file named by a qcow2 header. Names are resolved
 * relative to the directory of the image that names them (as qemu does);
 * loops are detected on real paths, so symlinks and "../x/./a" spellings of
 * the same file are caught; the chain depth is capped.
 *
 * The name comes from the image, i.e. from whoever made it: an image naming
 * /etc/shadow or /dev/sda as its backing file would otherwise copy that into
 * the store (and on to every server it is pushed to). So a backing file must
 * be a regular file in the image's own directory (a plain name, no "/", and
 * its real path, symlinks resolved, in that directory too), unless the user
 * names it as trusted (`--allow-backing PATH`).
 */
import fs from 'node:fs/promises';
import nodePath from 'node:path';
import type { Disk } from '../disk.js';
import { RawDisk } from '../raw.js';
import { probeFormat } from '../probe.js';
import { MAX_BACKING_DEPTH } from './layout.js';
import { VmdnError } from '../../errors.js';

export type OpenQcow2 = (path: string, opts: { chain: readonly string[]; allowBacking?: readonly string[] }) => Promise<Disk>;

/** Trusted backing files for this process (the CLI's --allow-backing); openers may pass their own list instead. */
let processAllowed: readonly string[] = [];
export function setAllowedBackingFiles(paths: readonly string[]): void {
  processAllowed = paths.map((p) => nodePath.resolve(p));
}

/** Real paths of the trusted files; a listed path that does not exist trusts nothing. */
async function realAllowed(list: readonly string[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const p of list) out.add(await fs.realpath(p).catch(() => nodePath.resolve(p)));
  return out;
}

function backingError(parent: string, msg: string, data: Record<string, unknown> = {}, cause?: unknown): VmdnError {
  return new VmdnError('E_BACKING', `${parent}: ${msg}`, { path: parent, ...data }, { cause });
}

/**
 * Check `name`, the backing (or parent) file that `parent` names, against the
 * rules above, and return the path to open (what was checked, not the name
 * again: a symlink swapped in between would escape the checks) and the chain
 * to hand to it. Shared with the other formats that have parents (VHD).
 */
export async function checkBackingFile(
  parent: string,
  name: string,
  chain: readonly string[],
  allowBacking: readonly string[] = processAllowed,
): Promise<{ target: string; file: string; below: string[] }> {
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
  const trusted = (await realAllowed(allowBacking)).has(real);
  if (!trusted) {
    const hint = `(only a regular file beside the image is opened as its backing file; pass --allow-backing ${JSON.stringify(file)} to trust this one)`;
    if (name.includes('/') || name === '..' || name === '.') {
      throw backingError(parent, `backing file "${name}" is outside the image's directory ${hint}`, { backing: file });
    }
    const ownDir = await fs.realpath(nodePath.dirname(parent));
    if (nodePath.dirname(real) !== ownDir) {
      throw backingError(parent, `backing file "${name}" resolves to ${real}, outside the image's directory ${hint}`, { backing: file, real });
    }
    if (!st.isFile()) throw backingError(parent, `backing file ${file} is not a regular file ${hint}`, { backing: file });
  }
  if (!st.isFile() && !st.isBlockDevice()) throw backingError(parent, `backing file ${file} is not a regular file or block device`, { backing: file });
  return { target: trusted ? file : real, file, below };
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
  allowBacking: readonly string[] = processAllowed,
): Promise<Disk> {
  const { target, file, below } = await checkBackingFile(parent, name, chain, allowBacking);
  let fmt = format;
  try {
    fmt ??= await probeFormat(target);
    if (fmt === 'qcow2') return await openQcow2(target, { chain: below, allowBacking });
    if (fmt === 'raw') return await RawDisk.open(target);
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
