/**
 * A stored revision opened for reading inside it (the portal's browse, file,
 * inside and index): the manifest as a Disk, files-strategy filesystems from
 * their trees, and the volume an OS lives on. Mirrors inspect/open-image.ts,
 * but on the origin's already-open store rather than a directory.
 */
import { ManifestDisk } from '../images/manifest-disk.js';
import { TreeFs } from '../strategy/files/tree-fs.js';
import { loadTree } from '../model/objects.js';
import type { Manifest } from '../model/manifest.js';
import type { ReadableStore } from '../store/types.js';
import { strategyFor } from '../strategy/registry.js';
import { listVolumes, pickVolume, type DiskVolumes, type Volume } from '../fs/volumes.js';
import { inspectOs } from '../os/inspect-os.js';
import { readOsRelease } from '../os/os-release.js';
import type { FileSystem } from '../fs/types.js';
import type { TreeFacts } from './catalog-db.js';

export async function openStored(store: ReadableStore, manifest: Manifest): Promise<ManifestDisk> {
  const disk = new ManifestDisk(manifest, store);
  for (const f of manifest.filesystems ?? []) disk.trees.set(f.offset, new TreeFs(f, await loadTree(f, store), store));
  return disk;
}

/** The volumes and the one an OS lives on (undefined: no readable filesystem). */
export async function rootVolume(disk: ManifestDisk): Promise<{ dv: DiskVolumes; root?: Volume & { fs: FileSystem } }> {
  const dv = await listVolumes(disk);
  if (!dv.volumes.some((v) => v.fs)) return { dv };
  return { dv, root: (await pickVolume(dv)) as Volume & { fs: FileSystem } };
}

/** Which strategy stored it (shown on the image page). */
export const strategyName = (m: Manifest): string => strategyFor(m).name;

/**
 * What identifies the indexed content: the filesystems' tree objects when the
 * image keeps them (images with the same files share them), else the manifest.
 */
export function treeKey(digest: string, m: Manifest): string {
  const trees = (m.filesystems ?? []).map((f) => f.tree.join(','));
  return trees.length ? `t:${trees.join(';')}` : `m:${digest}`;
}

/** Bounds: a huge tree is indexed partly rather than stalling the catalog. */
const MAX_PATHS = 500_000;

/** The OS, packages and every path of the root volume, for the search index. */
export async function treeFacts(disk: ManifestDisk): Promise<TreeFacts> {
  const facts: TreeFacts = { os: '', release: '', codename: '', pretty: '', packages: [], paths: [] };
  const { root } = await rootVolume(disk);
  if (!root) return facts;
  const rel = await readOsRelease(root.fs).catch(() => null);
  facts.os = rel?.ID ?? '';
  facts.release = rel?.VERSION_ID ?? '';
  facts.codename = rel?.VERSION_CODENAME ?? '';
  facts.pretty = rel?.PRETTY_NAME ?? '';
  facts.packages = (await inspectOs(root.fs).catch(() => undefined))?.packages.map((p) => ({ name: p.name, version: p.version, arch: p.arch })) ?? [];
  const fs = root.fs;
  const stack: Array<{ ino: number; path: string }> = [{ ino: (await fs.root()).ino, path: '' }];
  const seen = new Set<number>();
  while (stack.length && facts.paths.length < MAX_PATHS) {
    const d = stack.pop()!;
    if (seen.has(d.ino)) continue;
    seen.add(d.ino);
    let entries;
    try {
      entries = await fs.readdir(await fs.stat(d.ino));
    } catch {
      continue; // a damaged directory: index the rest
    }
    for (const e of entries) {
      if (e.name === '.' || e.name === '..') continue;
      const p = `${d.path}/${e.name}`;
      facts.paths.push(p);
      if (e.type === 'dir') stack.push({ ino: e.ino, path: p });
    }
  }
  return facts;
}
