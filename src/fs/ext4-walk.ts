/**
 * Depth-first walk of any FileSystem from its root. Each directory inode is
 * entered at most once, so a corrupt image whose entries point back to an
 * ancestor (a directory loop) ends in E_FORMAT instead of recursing forever.
 */
import { VmdnError } from '../errors.js';
import type { DirEntry, FileSystem, FsNode } from './types.js';

export interface WalkItem {
  /** '/'-joined decoded path from the root ('' for the root itself). */
  path: string;
  node: FsNode;
  entry?: DirEntry;
}

export async function* walkFs(fs: FileSystem, start?: FsNode): AsyncGenerator<WalkItem> {
  const root = start ?? (await fs.root());
  const entered = new Set<number>([root.ino]);
  yield { path: '', node: root };
  const stack: Array<{ dir: FsNode; path: string }> = [{ dir: root, path: '' }];
  while (stack.length) {
    const { dir, path } = stack.pop()!;
    const entries = await fs.readdir(dir);
    const subdirs: Array<{ dir: FsNode; path: string }> = [];
    for (const entry of entries) {
      const node = await fs.stat(entry.ino);
      const p = `${path}/${entry.name}`;
      yield { path: p, node, entry };
      if (node.type !== 'dir') continue;
      if (entered.has(node.ino)) throw new VmdnError('E_FORMAT', `directory loop: ${p} is directory inode ${node.ino}, already entered`, { ino: node.ino, path: p });
      entered.add(node.ino);
      subdirs.push({ dir: node, path: p });
    }
    // Reverse so the stack pops subdirectories in directory order.
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
  }
}
