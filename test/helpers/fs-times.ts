/** Every path's four timestamps on an image's first ext4 volume, read with vmdn's own reader. */
import { openDisk } from '../../src/container/open.js';
import { listVolumes } from '../../src/fs/volumes.js';
import { walkFs } from '../../src/fs/ext4/walk.js';

/** path -> "mtime atime ctime crtime" (sec.nsec each). */
export async function allTimes(image: string): Promise<Map<string, string>> {
  const disk = await openDisk(image);
  try {
    const v = (await listVolumes(disk)).volumes.find((x) => x.kind === 'ext4')!;
    const out = new Map<string, string>();
    const t = (x?: { sec: number; nsec: number }) => (x ? `${x.sec}.${x.nsec}` : '-');
    for await (const { path: p, node } of walkFs(v.fs!)) out.set(p, [t(node.mtime), t(node.atime), t(node.ctime), t(node.crtime)].join(' '));
    return out;
  } finally {
    await disk.close();
  }
}

/** Paths whose times differ (at most `max`), as "path: a vs b". */
export async function timeDifferences(a: string, b: string, max = 5): Promise<{ sizes: [number, number]; wrong: string[] }> {
  const [x, y] = [await allTimes(a), await allTimes(b)];
  const wrong = [...x].filter(([p, v]) => y.get(p) !== v).slice(0, max).map(([p, v]) => `${p}: ${v} vs ${y.get(p)}`);
  return { sizes: [x.size, y.size], wrong };
}
