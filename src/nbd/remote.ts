/**
 * An image on an origin or edge served before it is downloaded (`vmdn nbd
 * NAME --from URL`): the name is resolved there and the manifest fetched;
 * each guest read then fetches only the objects it touches, through the same
 * HttpStore + CachingStore a pull uses (verified by hash, a bad copy fetched
 * again past caches, kept in the local cache, one fetch per object), while
 * a background fill (fill.ts) brings the rest and names the image in the
 * cache. An unreachable origin fails the reads that need it with EIO once
 * HttpStore's retries are spent; the server lives on and serves again when
 * the origin is back.
 */
import type { LocalStore } from '../store/local/local-store.js';
import type { ImageRef } from '../store/image-name.js';
import { CachingStore } from '../store/cache/caching-store.js';
import { HttpStore, type HttpStoreOptions } from '../net/client/http-store.js';
import { decodeManifest } from '../model/manifest.js';
import { imageObjects } from '../model/objects.js';
import type { TreeRecord } from '../model/files-tree.js';
import { metadataInputs } from '../strategy/files/direct.js';
import { DemandStore, newCounters, type LazyCounters } from './demand.js';
import { fillImage, type FillOptions } from './fill.js';
import { deviceOver, openBase, type OpenedDevice } from './open.js';

export interface RemoteOptions {
  overlay?: string;
  readOnly?: boolean;
  /** Fetch the rest of the image in the background (default true). */
  fill?: boolean;
  http?: HttpStoreOptions;
  fillOptions?: Omit<FillOptions, 'signal'>;
}

export interface RemoteDevice extends OpenedDevice {
  counters: LazyCounters;
  /** Settles when the fill ends: done (image named in the cache), stopped by close(), or never started (--no-fill). */
  filled: Promise<void>;
}

/** Connections to the origin: the guest's reads, plus the fill's few batches. */
const CONNECTIONS = 8;

export async function openRemoteDevice(url: string, ref: ImageRef, cache: LocalStore, o: RemoteOptions = {}): Promise<RemoteDevice> {
  const remote = new HttpStore(url, { connections: CONNECTIONS, ...o.http });
  const stop = new AbortController();
  let opened: OpenedDevice | undefined;
  try {
    const store = await CachingStore.open(cache, remote);
    const digest = await remote.resolve(ref);
    const manifest = decodeManifest(await store.get(digest), `${url} ${digest.slice(0, 12)}`);
    const trees: TreeRecord[][] = [];
    const objects = await imageObjects(manifest, store, { trees });
    const cached = [...objects].filter((d) => cache.index.getObject(d)).length;
    const counters = newCounters(objects.size, cached);
    const demand = new DemandStore(store, counters);
    // files/packages images: their filesystems' metadata is built first; what it reads comes in batches first
    await demand.warm((manifest.filesystems ?? []).flatMap((f, i) => metadataInputs(f, trees[i]!)));
    const base = await openBase(manifest, demand);
    try {
      opened = { ...(await deviceOver(base.disk, digest, manifest.virtualSize, o)), rebuilt: base.stats };
    } catch (err) {
      await base.disk.close();
      throw err;
    }
    const filled = o.fill === false
      ? Promise.resolve()
      : fillImage(demand, ref, digest, manifest, objects, {
        ...o.fillOptions, signal: stop.signal,
        onError: o.fillOptions?.onError ?? ((err) => process.stderr.write(`vmdn nbd: fill paused: ${(err as Error).message}\n`)),
      }).catch((err) => {
        if (!stop.signal.aborted) process.stderr.write(`vmdn nbd: fill stopped: ${(err as Error).message}\n`);
      });
    const device = opened;
    return {
      ...device, counters, filled,
      close: async () => {
        stop.abort();
        await filled;
        try {
          await device.close();
        } finally {
          await remote.close();
        }
      },
    };
  } catch (err) {
    await opened?.close();
    await remote.close();
    throw err;
  }
}
