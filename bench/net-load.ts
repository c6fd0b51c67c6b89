/**
 * Network benchmark parts that run clients in this process: many concurrent
 * clients through one edge, and the eviction-policy replay that picks the
 * edge's default policy. Also the helper that gives a client cache the
 * objects of images it "already holds" (hard links from the origin store).
 */
import fs from 'node:fs';
import { LocalStore } from '../src/store/local/local-store.js';
import type { Digest } from '../src/store/digest.js';
import { decodeManifest, uniqueChunks, dataBytes } from '../src/model/manifest.js';
import { HttpStore } from '../src/net/client/http-store.js';
import { createPolicy, POLICIES, type PolicyName } from '../src/store/cache/eviction.js';
import { objectUrlPath } from '../src/net/wire/http-api.js';

export interface ImageObjects {
  name: string;
  manifest: Digest;
  /** Chunk digests in manifest order (first occurrence), then the manifest. */
  digests: Digest[];
  storedBytes: number;
  sizes: Map<Digest, number>;
}

/** Read an image's object list and encoded sizes from a local store. */
export async function imageObjects(store: LocalStore, name: string): Promise<ImageObjects> {
  const row = store.index.getImage(name, 'latest');
  if (!row) throw new Error(`image ${name} not in ${store.dir}`);
  const m = decodeManifest(await store.get(row.manifest));
  const digests = [...uniqueChunks(m).keys(), row.manifest];
  const sizes = new Map<Digest, number>();
  let storedBytes = 0;
  for (const d of digests) {
    const s = store.index.getObject(d)!.storedSize;
    sizes.set(d, s);
    storedBytes += s;
  }
  return { name, manifest: row.manifest, digests, storedBytes, sizes };
}

/** A client that "holds" images: their objects hard-linked from the origin store and the names recorded. */
export async function seedCache(origin: LocalStore, cacheDir: string, held: string[]): Promise<void> {
  fs.rmSync(cacheDir, { recursive: true, force: true });
  const cache = await LocalStore.open(cacheDir, { workers: 0 });
  try {
    for (const name of held) {
      const row = origin.index.getImage(name, 'latest')!;
      const objs = await imageObjects(origin, name);
      for (const d of objs.digests) {
        if (cache.index.getObject(d)) continue;
        fs.mkdirSync(cache.objectPath(d).slice(0, -65), { recursive: true });
        fs.linkSync(origin.objectPath(d), cache.objectPath(d));
        cache.index.addObject(origin.index.getObject(d)!);
      }
      const m = decodeManifest(await origin.get(row.manifest));
      cache.index.putImage({ ...row, dataSize: dataBytes(m) }, objs.digests);
    }
  } finally {
    await cache.close();
  }
}

/** Run `n` clients at once, each fetching `digests` (verified when `verify`) with `perClient` requests in flight. */
export async function fanOut(url: string, n: number, digestsFor: (i: number) => Digest[], opts: { perClient: number; verify: boolean }): Promise<{ seconds: number; bytes: number; requests: number }> {
  const t0 = Date.now();
  let bytes = 0;
  let requests = 0;
  const client = async (i: number) => {
    const remote = new HttpStore(url, { connections: opts.perClient });
    const list = digestsFor(i);
    let next = 0;
    const worker = async () => {
      while (next < list.length) {
        const d = list[next++]!;
        // not `bytes += await ...`: that reads `bytes` before the await and loses concurrent updates
        const n = opts.verify ? (await remote.fetchVerified(d)).encoded.length : (await remote.request('GET', objectUrlPath(d))).body.length;
        bytes += n;
        requests++;
      }
    };
    try {
      await Promise.all(Array.from({ length: opts.perClient }, worker));
    } finally {
      await remote.close();
    }
  };
  await Promise.all(Array.from({ length: n }, (_, i) => client(i)));
  return { seconds: (Date.now() - t0) / 1000, bytes, requests };
}

/** Seeded shuffle, so runs are comparable. */
export function shuffled<T>(a: T[], seed: number): T[] {
  const out = [...a];
  let x = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export interface PolicyRun {
  policy: PolicyName;
  budgetFraction: number;
  budgetBytes: number;
  byteHitRatio: number;
  hitRatio: number;
}

/**
 * Replay a delivery-like trace through each policy: 60 pulls, the image of
 * each drawn with Zipf-like popularity (base most popular, turn least), every
 * pull asking for all of that image's objects. Byte hit ratio is what the
 * edge saves its upstream.
 */
export function policyReplay(images: ImageObjects[], fractions = [0.25, 0.5]): { runs: PolicyRun[]; best: PolicyName } {
  const total = new Map<Digest, number>();
  for (const im of images) for (const [d, s] of im.sizes) total.set(d, s);
  const totalBytes = [...total.values()].reduce((a, b) => a + b, 0);
  const weights = images.map((_, i) => 1 / (i + 1));
  const wsum = weights.reduce((a, b) => a + b, 0);
  let x = 12345;
  const rand = () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
  const pulls: ImageObjects[] = [];
  for (let i = 0; i < 60; i++) {
    let r = rand() * wsum;
    let k = 0;
    while (r > weights[k]! && k < images.length - 1) r -= weights[k++]!;
    pulls.push(images[k]!);
  }
  const runs: PolicyRun[] = [];
  for (const fraction of fractions) {
    for (const policy of POLICIES) {
      const p = createPolicy(policy, Math.floor(totalBytes * fraction));
      let hitBytes = 0, allBytes = 0, hits = 0, reqs = 0;
      for (const im of pulls) {
        for (const d of im.digests) {
          const s = im.sizes.get(d)!;
          allBytes += s;
          reqs++;
          if (p.has(d)) {
            p.touch(d);
            hitBytes += s;
            hits++;
          } else p.insert(d, s);
        }
      }
      runs.push({ policy, budgetFraction: fraction, budgetBytes: p.capacity, byteHitRatio: hitBytes / allBytes, hitRatio: hits / reqs });
    }
  }
  const score = (pol: PolicyName) => runs.filter((r) => r.policy === pol).reduce((a, r) => a + r.byteHitRatio, 0);
  const best = [...POLICIES].sort((a, b) => score(b) - score(a))[0]!;
  return { runs, best };
}
