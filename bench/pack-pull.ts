/**
 * Bytes a real pull moves: an origin on a benchmark store, a fresh cache that
 * first pulls the held images, then the target, with packs (pack.ts) or
 * without. In process; the origin's and the client's work share the cores.
 */
import fs from 'node:fs';
import { LocalStore } from '../src/store/local/local-store.js';
import { Origin } from '../src/net/server/origin.js';
import { pullImage } from '../src/net/client/pull.js';

export interface PulledDelivery {
  /** Bytes received for the target: manifest, objects, packs. */
  bytes: number;
  seconds: number;
  packs: number;
  objects: number;
}

export async function pulledDelivery(storeDir: string, cacheDir: string, target: string, held: string[], packs: boolean): Promise<PulledDelivery> {
  const origin = new Origin(await LocalStore.open(storeDir));
  const url = await origin.listen();
  fs.rmSync(cacheDir, { recursive: true, force: true });
  const cache = await LocalStore.open(cacheDir);
  try {
    for (const h of held) await pullImage({ url, ref: { name: h, tag: 'latest' }, cache, packs: false });
    const r = await pullImage({ url, ref: { name: target, tag: 'latest' }, cache, packs });
    return { bytes: r.bytesDownloaded, seconds: r.seconds, packs: r.packs.packs, objects: r.objects.downloaded };
  } finally {
    await cache.close();
    await origin.close();
    await origin.store.close();
    fs.rmSync(cacheDir, { recursive: true, force: true });
  }
}
