/**
 * Reading files from an image's FileSystem by path, resolving symbolic links
 * inside the image (absolute targets restart at the image root, '..' stops
 * there). Nothing here ever touches the host filesystem.
 */
import type { FileSystem, FsNode } from '../fs/types.js';
import { VmdnError, check } from '../errors.js';

/** Linux's limit on symlinks followed in one path walk. */
const MAX_LINKS = 40;
const MAX_COMPONENTS = 4096;

function split(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

/** Resolve `path` from the image root, following symlinks (also the last component unless `nofollow`). */
export async function resolvePath(fs: FileSystem, path: string, opts: { nofollow?: boolean } = {}): Promise<FsNode> {
  const stack: string[] = [];
  const queue = split(path);
  let links = 0;
  let node = await fs.root();
  while (queue.length) {
    check(stack.length + queue.length <= MAX_COMPONENTS, 'E_FORMAT', `${path}: path too long`);
    const c = queue.shift()!;
    if (c === '..') {
      stack.pop();
      node = await fs.lookup('/' + stack.join('/'));
      continue;
    }
    const next = await fs.lookup('/' + [...stack, c].join('/'));
    if (next.type === 'symlink' && (queue.length > 0 || !opts.nofollow)) {
      check(++links <= MAX_LINKS, 'E_FORMAT', `${path}: too many levels of symbolic links`);
      const target = await fs.readlink(next);
      if (target.startsWith('/')) stack.length = 0;
      queue.unshift(...split(target));
      node = await fs.lookup('/' + stack.join('/'));
      continue;
    }
    stack.push(c);
    node = next;
  }
  return node;
}

/** Whole content of a regular file, refusing files over `max` bytes (image data is untrusted). */
export async function readNode(fs: FileSystem, node: FsNode, max: number, what = `node ${node.ino}`): Promise<Buffer> {
  if (node.type !== 'file') throw new VmdnError('E_FORMAT', `${what} is not a regular file`);
  check(node.size <= max, 'E_FORMAT', `${what} is ${node.size} bytes, over the ${max}-byte limit`);
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const b of fs.readFile(node)) {
    n += b.length;
    check(n <= max, 'E_FORMAT', `${what} is longer than its size says`);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** Read a file by path; undefined if it (or a directory on the way) does not exist. */
export async function readPath(fs: FileSystem, path: string, max: number): Promise<Buffer | undefined> {
  let node: FsNode;
  try {
    node = await resolvePath(fs, path);
  } catch (err) {
    if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') return undefined;
    throw err;
  }
  return readNode(fs, node, max, path);
}

const SLASH = 0x2f;

/** The components of a path given as bytes, without empty and '.' ones. */
export function splitPathBytes(p: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (let i = 0; i <= p.length; i++) {
    if (i < p.length && p[i] !== SLASH) continue;
    const c = Buffer.from(p.subarray(from, i));
    if (c.length && !(c.length === 1 && c[0] === 0x2e)) out.push(c);
    from = i + 1;
  }
  return out;
}

/**
 * resolvePath for a path given as its exact bytes: names need not be UTF-8
 * (ext4's are any bytes but '/' and NUL), and a lossily decoded string cannot
 * name such a file. Walks directory by directory comparing name bytes, with
 * the same symlink and '..' rules.
 */
export async function resolvePathBytes(fs: FileSystem, path: Uint8Array, opts: { nofollow?: boolean } = {}): Promise<FsNode> {
  const shown = Buffer.from(path).toString();
  const stack: FsNode[] = [await fs.root()];
  const queue = splitPathBytes(path);
  let links = 0;
  while (queue.length) {
    check(stack.length + queue.length <= MAX_COMPONENTS, 'E_FORMAT', `${shown}: path too long`);
    const c = queue.shift()!;
    if (c.length === 2 && c[0] === 0x2e && c[1] === 0x2e) {
      if (stack.length > 1) stack.pop();
      continue;
    }
    const dir = stack[stack.length - 1]!;
    const e = dir.type === 'dir' ? (await fs.readdir(dir)).find((x) => Buffer.compare(x.nameBytes, c) === 0) : undefined;
    if (!e) throw new VmdnError('E_NOT_FOUND', `${shown}: no such file or directory`, { pathB64: Buffer.from(path).toString('base64') });
    const next = await fs.stat(e.ino);
    if (next.type === 'symlink' && (queue.length > 0 || !opts.nofollow)) {
      check(++links <= MAX_LINKS, 'E_FORMAT', `${shown}: too many levels of symbolic links`);
      const target = Buffer.from(await fs.readlink(next));
      if (target[0] === SLASH) stack.length = 1;
      queue.unshift(...splitPathBytes(target));
      continue;
    }
    stack.push(next);
  }
  return stack[stack.length - 1]!;
}
