/** Walk a FileSystem into a flat path -> {type, size, sha256} map, bounded so corrupt images cannot make it run away. */
import crypto from 'node:crypto';
import type { FileSystem, FsNode } from '../../src/fs/types.js';

export interface TreeEntry {
  type: string;
  size: number;
  sha256?: string;
}

export async function walkTree(fs: FileSystem, opts: { hash?: boolean; maxNodes?: number; maxDepth?: number } = {}): Promise<Map<string, TreeEntry>> {
  const out = new Map<string, TreeEntry>();
  const maxNodes = opts.maxNodes ?? 100_000, maxDepth = opts.maxDepth ?? 32;
  const visit = async (dir: FsNode, prefix: string, depth: number): Promise<void> => {
    if (depth > maxDepth) return;
    for (const e of await fs.readdir(dir)) {
      if (out.size >= maxNodes) return;
      const node = await fs.stat(e.ino);
      const p = `${prefix}/${e.name}`;
      const t: TreeEntry = { type: node.type, size: node.type === 'file' ? node.size : 0 };
      if (node.type === 'file' && opts.hash) {
        const h = crypto.createHash('sha256');
        for await (const b of fs.readFile(node)) h.update(b);
        t.sha256 = h.digest('hex');
      }
      out.set(p, t);
      if (node.type === 'dir') await visit(node, p, depth + 1);
    }
  };
  await visit(await fs.root(), '', 0);
  return out;
}
