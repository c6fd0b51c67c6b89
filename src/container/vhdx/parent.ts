/**
 * The parent locator of a differencing VHDX: key/value pairs (UTF-16LE) of
 * which this reader uses `parent_linkage` (the parent's data write GUID) and
 * `relative_path` (".\parent.vhdx"). The parent is then opened under the same
 * rules as a qcow2 backing file (checkBackingFile: beside the child unless
 * trusted with --allow-backing, no loops, bounded depth), must be a VHDX, and
 * its current data write GUID must be the linkage the child names.
 */
import { VmdnError } from '../../errors.js';
import { checkBackingFile } from '../qcow2/backing.js';
import { fail } from './header.js';
import { parentLocatorHeader, parentLocatorEntry, VHDX_PARENT_LOCATOR_TYPE, sameGuid } from './layout.js';

export interface ParentLocator {
  readonly linkage: string;
  readonly linkage2: string | null;
  readonly relativePath: string | null;
}

const utf16le = new TextDecoder('utf-16le', { fatal: true });
const MAX_KEYS = 256;

export function parseLocator(item: Uint8Array, path: string): ParentLocator {
  const h = parentLocatorHeader.parse(item);
  if (!sameGuid(h.locatorType, VHDX_PARENT_LOCATOR_TYPE)) fail('E_UNSUPPORTED', path, 'parent locator of an unknown type (only VHDX parents are supported)', { field: 'parentLocator' });
  if (h.keyValueCount > MAX_KEYS || parentLocatorHeader.size + h.keyValueCount * parentLocatorEntry.size > item.length) {
    fail('E_FORMAT', path, `parent locator of ${h.keyValueCount} entries does not fit its ${item.length} bytes`, { field: 'parentLocator' });
  }
  const text = (off: number, len: number, what: string): string => {
    if (off === 0 || len === 0 || len % 2 !== 0 || off + len > item.length) fail('E_FORMAT', path, `parent locator ${what} (${off}+${len}) out of range`, { field: 'parentLocator' });
    try {
      return utf16le.decode(item.subarray(off, off + len));
    } catch {
      fail('E_FORMAT', path, `parent locator ${what} is not valid UTF-16`, { field: 'parentLocator' });
    }
  };
  const kv = new Map<string, string>();
  for (let i = 0; i < h.keyValueCount; i++) {
    const e = parentLocatorEntry.parse(item, parentLocatorHeader.size + i * parentLocatorEntry.size);
    const key = text(e.keyOffset, e.keyLength, 'key');
    if (kv.has(key)) fail('E_FORMAT', path, `parent locator key ${key} appears twice`, { field: 'parentLocator' });
    kv.set(key, text(e.valueOffset, e.valueLength, `value of ${key}`));
  }
  const linkage = kv.get('parent_linkage');
  if (!linkage) fail('E_FORMAT', path, 'parent locator has no parent_linkage', { field: 'parentLocator' });
  return { linkage, linkage2: kv.get('parent_linkage2') ?? null, relativePath: kv.get('relative_path') ?? null };
}

/** A relative path as a file name: ".\parent.vhdx" -> "parent.vhdx", backslashes as "/". */
export function locatorName(rel: string): string {
  const s = rel.replaceAll('\\', '/');
  return s.startsWith('./') ? s.slice(2) : s;
}

export interface VhdxParentLike {
  readonly dataWriteGuidText: string;
  close(): Promise<void>;
}

/** Check and open the parent named by `loc`; `open` is the VHDX opener (passed in to avoid an import cycle). */
export async function openParent<T extends VhdxParentLike>(
  path: string,
  loc: ParentLocator,
  chain: readonly string[],
  allowBacking: readonly string[] | undefined,
  open: (target: string, chain: string[]) => Promise<T>,
): Promise<T> {
  if (!loc.relativePath) throw new VmdnError('E_BACKING', `${path}: differencing VHDX names no parent by relative path`, { path });
  const { target, file, below } = await checkBackingFile(path, locatorName(loc.relativePath), chain, allowBacking);
  let parent: T;
  try {
    parent = await open(target, below);
  } catch (err) {
    if (err instanceof VmdnError) {
      if (err.code === 'E_BACKING') throw err;
      throw new VmdnError(err.code, `parent of ${path}: ${err.message}`, { ...err.data, parent: path }, { cause: err });
    }
    throw new VmdnError('E_BACKING', `${path}: cannot open parent ${file}: ${(err as Error).message}`, { path, backing: file }, { cause: err });
  }
  const want = [loc.linkage, loc.linkage2].filter((x): x is string => x !== null).map((x) => x.toUpperCase());
  if (!want.includes(parent.dataWriteGuidText)) {
    await parent.close();
    throw new VmdnError('E_BACKING', `${path}: parent ${file} is not the disk this one was made from (data write GUID ${parent.dataWriteGuidText}, child expects ${loc.linkage})`, { path, backing: file });
  }
  return parent;
}
