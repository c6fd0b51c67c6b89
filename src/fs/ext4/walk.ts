/**
 * Depth-first walk of any FileSystem from its root. Each directory inode is
 * entered at most once, so a corrupt image whose entries point back to an
 * ancestor (a directory loop) ends in E_FORMAT instead of recursing forever.
 */
import { VmdnError } from '../../errors.js';
import type { DirEntry, FileSystem, FsNode } from '../types.js';

export interface WalkItem {
  /** '/'-joined decoded path from the root ('' for the root itself). */
  path: string;
  /** The exact path bytes ('/'-joined raw names; empty for the root). */
  pathBytes: Uint8Array;
  node: FsNode;
  entry?: DirEntry;
}

const SLASH = new Uint8Array([0x2f]);

export async function* walkFs(fs: FileSystem, start?: FsNode): AsyncGenerator<WalkItem> {
  const root = start ?? (await fs.root());
  const entered = new Set<number>([root.ino]);
  yield { path: '', pathBytes: new Uint8Array(0), node: root };
  const stack: Array<{ dir: FsNode; path: string; bytes: Uint8Array }> = [{ dir: root, path: '', bytes: new Uint8Array(0) }];
  while (stack.length) {
    const { dir, path, bytes } = stack.pop()!;
    const entries = await fs.readdir(dir);
    const subdirs: Array<{ dir: FsNode; path: string; bytes: Uint8Array }> = [];
    for (const entry of entries) {
      const node = await fs.stat(entry.ino);
      const p = `${path}/${entry.name}`;
      const pb = Buffer.concat([bytes, SLASH, entry.nameBytes]);
      yield { path: p, pathBytes: pb, node, entry };
      if (node.type !== 'dir') continue;
      if (entered.has(node.ino)) throw new VmdnError('E_FORMAT', `directory loop: ${p} is directory inode ${node.ino}, already entered`, { ino: node.ino, path: p });
      entered.add(node.ino);
      subdirs.push({ dir: node, path: p, bytes: pb });
    }
    // Reverse so the stack pops subdirectories in directory order.
    for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]);
  }
}
