/**
 * Where a path a package names really is in an image. Merged-/usr systems
 * ship /lib/x.so in the package while the file sits at /usr/lib/x.so (/lib is
 * a symlink), so package paths are matched after resolving their directories
 * through the image's own symlinks -- inside the image, never the host.
 */
import type { FileSystem } from '../fs/types.js';
import { VmdnError } from '../errors.js';

const MAX_LINKS = 40;

/** Resolves directory parts of root-relative paths ("lib/x.so" -> "usr/lib/x.so"), memoised per directory. */
export class CanonicalPaths {
  private readonly dirs = new Map<string, Promise<string | undefined>>();
  constructor(private readonly fs: FileSystem) {}

  /** The path with its directory resolved; undefined if a directory on the way is missing. */
  async of(p: string): Promise<string | undefined> {
    const slash = p.lastIndexOf('/');
    if (slash < 0) return p;
    const dir = await this.dir(p.slice(0, slash), 0);
    return dir === undefined ? undefined : dir ? `${dir}/${p.slice(slash + 1)}` : p.slice(slash + 1);
  }

  private dir(d: string, depth: number): Promise<string | undefined> {
    let r = this.dirs.get(d);
    if (!r) {
      r = this.resolve(d, depth);
      this.dirs.set(d, r);
    }
    return r;
  }

  private async resolve(d: string, depth: number): Promise<string | undefined> {
    if (depth > MAX_LINKS) throw new VmdnError('E_FORMAT', `${d}: too many levels of symbolic links`);
    const slash = d.lastIndexOf('/');
    const parent = slash < 0 ? '' : await this.dir(d.slice(0, slash), depth);
    if (parent === undefined) return undefined;
    const name = d.slice(slash + 1);
    if (name === '' || name === '.') return parent;
    if (name === '..') return parent.includes('/') ? parent.slice(0, parent.lastIndexOf('/')) : '';
    const here = parent ? `${parent}/${name}` : name;
    let node;
    try {
      node = await this.fs.lookup(`/${here}`);
    } catch (err) {
      if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') return undefined;
      throw err;
    }
    if (node.type === 'dir') return here;
    if (node.type !== 'symlink') return undefined;
    const target = await this.fs.readlink(node);
    const joined = target.startsWith('/') ? target : parent ? `${parent}/${target}` : target;
    const parts = joined.split('/').filter((c) => c !== '' && c !== '.');
    // resolve the target's components one at a time (it may hold '..' and further links)
    let cur = '';
    for (const c of parts) {
      if (c === '..') cur = cur.includes('/') ? cur.slice(0, cur.lastIndexOf('/')) : '';
      else {
        const next = await this.dir(cur ? `${cur}/${c}` : c, depth + 1);
        if (next === undefined) return undefined;
        cur = next;
      }
    }
    return cur;
  }
}
