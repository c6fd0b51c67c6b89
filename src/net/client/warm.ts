/**
 * Warm a cache ahead of need: fetch every object of some images through an
 * edge (or any vmdn server) so the edge holds them before a site asks, e.g.
 * an edge near a site seeded with the packages most of its VMs use. Objects
 * are fetched as clients fetch them (the edge verifies what it caches; this
 * side verifies every answer too), and nothing is written locally.
 */
import type { Digest } from '../../store/digest.js';
import type { ImageRef } from '../../store/image-name.js';
import { formatImageRef } from '../../store/image-name.js';
import { decodeManifest } from '../../model/manifest.js';
import { imageObjects } from '../../model/objects.js';
import { HttpStore } from './http-store.js';
import type { RecordCheck } from './trust.js';
import { packageObjects } from '../../model/package-ref.js';
import type { OnProgress } from '../../util/progress.js';

export interface WarmResult {
  images: string[];
  /** Distinct objects fetched, and their encoded bytes as served. */
  objects: number;
  bytes: number;
  /** Packages whose .deb objects were fetched (packages-strategy images). */
  packages: number;
}

export async function warmCache(url: string, refs: ImageRef[], opts: { packagesOnly?: boolean; concurrency?: number; token?: string; signal?: AbortSignal; onProgress?: OnProgress; trust?: RecordCheck } = {}): Promise<WarmResult> {
  const concurrency = opts.concurrency ?? 16;
  const remote = new HttpStore(url, { connections: concurrency, token: opts.token, trust: opts.trust });
  try {
    const want = new Set<Digest>();
    const debs = new Set<string>();
    for (const ref of refs) {
      const digest = await remote.resolve(ref, opts.signal);
      const m = decodeManifest(await remote.get(digest, { signal: opts.signal }), `${url} ${formatImageRef(ref)}`);
      for (const f of m.filesystems ?? []) {
        for (const p of f.packages ?? []) {
          debs.add(p.sha256);
          for (const d of packageObjects(p)) want.add(d);
        }
      }
      if (!opts.packagesOnly) for (const d of [digest, ...(await imageObjects(m, remote, { signal: opts.signal }))]) want.add(d);
    }
    const list = [...want];
    let next = 0;
    let bytes = 0;
    let done = 0;
    const worker = async () => {
      while (next < list.length) {
        const d = list[next++]!;
        bytes += (await remote.getEncoded(d, { signal: opts.signal })).length;
        opts.onProgress?.({ phase: 'fetch', done: ++done, total: list.length, unit: 'objects' });
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, worker));
    return { images: refs.map(formatImageRef), objects: list.length, bytes, packages: debs.size };
  } finally {
    await remote.close();
  }
}
