/**
 * An image on an origin or edge served before it is downloaded (`vmdn nbd
 * NAME --from URL`): the name is resolved there and the manifest fetched;
 * each guest read then fetches only the objects it touches, through the same
 * HttpStore + CachingStore a pull uses (verified by hash, a bad copy fetched
 * again past caches, kept in the local cache, one fetch per object), while
 * a background fill (fill.ts) brings the rest and names the image in the
 * cache, the image's boot profile first when the origin has one (profile.ts). An unreachable origin fails the reads that need it with EIO once
 * HttpStore's retries are spent; the server lives on and serves again when
 * the origin is back.
 */
import type { LocalStore } from '../store/local/local-store.js';
import type { ImageRef } from '../store/image-name.js';
import { CachingStore } from '../store/cache/caching-store.js';
import { HttpStore, type HttpStoreOptions } from '../net/client/http-store.js';
import { Peers } from '../net/client/peers.js';
import { PeeredUpstream } from '../net/client/peered-upstream.js';
import { decodeManifest } from '../model/manifest.js';
import { imageObjects } from '../model/objects.js';
import type { TreeRecord } from '../model/files-tree.js';
import { metadataInputs } from '../strategy/files/direct.js';
import { DemandStore, newCounters, type LazyCounters } from './demand.js';
import { fillImage, type FillOptions } from './fill.js';
import { loadProfile, type LoadedProfile } from './profile.js';
import type { Digest } from '../store/digest.js';
import type { Manifest } from '../model/manifest.js';
import { deviceOver, openBase, type OpenedDevice } from './open.js';
import { SlabDisk } from './slab-disk.js';

export interface RemoteOptions {
  overlay?: string;
  readOnly?: boolean;
  /** Fetch the rest of the image in the background (default true). */
  fill?: boolean;
  http?: HttpStoreOptions;
  fillOptions?: Omit<FillOptions, 'signal' | 'first'>;
  /** Prefetch in the order of the origin's boot profile for the image (default true). */
  profile?: boolean;
  /** Other sites' vmdn servers asked for objects before the origin (docs/p2p.md). */
  peers?: string[];
  /** Where warnings go (a refused profile); default stderr. */
  warn?: (msg: string) => void;
}

export interface RemoteDevice extends OpenedDevice {
  counters: LazyCounters;
  /** The boot profile the fill follows first, if the origin had a usable one. */
  profile: LoadedProfile | undefined;
  /** Settles when the fill ends: done (image named in the cache), stopped by close(), or never started (--no-fill). */
  filled: Promise<void>;
}

/** Connections to the origin: the guest's reads, plus the fill's few batches. */
const CONNECTIONS = 8;

export async function openRemoteDevice(url: string, ref: ImageRef, cache: LocalStore, o: RemoteOptions = {}): Promise<RemoteDevice> {
  const remote = new HttpStore(url, { connections: CONNECTIONS, ...o.http });
  const peers = o.peers?.length ? new Peers(o.peers) : undefined;
  const stop = new AbortController();
  let opened: OpenedDevice | undefined;
  try {
    const store = await CachingStore.open(cache, peers ? new PeeredUpstream(remote, peers) : remote);
    const digest = await remote.resolve(ref);
    await peers?.probe(digest);
    const manifest = decodeManifest(await store.get(digest), `${url} ${digest.slice(0, 12)}`);
    const trees: TreeRecord[][] = [];
    const objects = await imageObjects(manifest, store, { trees });
    const cached = [...objects].filter((d) => cache.index.getObject(d)).length;
    const counters = newCounters(objects.size, cached);
    const demand = new DemandStore(store, counters);
    const warn = o.warn ?? ((msg: string) => process.stderr.write(`vmdn nbd: ${msg}\n`));
    const profile = o.profile === false || o.fill === false ? undefined : await originProfile(remote, store, digest, manifest, warn);
    counters.profileObjects = profile?.order.length ?? 0;
    // files/packages images: their filesystems' metadata is built first; what it reads comes in batches first
    await demand.warm((manifest.filesystems ?? []).flatMap((f, i) => metadataInputs(f, trees[i]!)));
    // every object already in the cache: the cache is a local store like any other, read as
    // `vmdn nbd NAME` reads one (for a chunks image, through the slab: no per-object buffers)
    const complete = cached === objects.size && !manifest.filesystems?.length;
    const base = await openBase(manifest, complete ? cache : demand);
    try {
      opened = { ...(await deviceOver(base.disk, digest, manifest, o)), rebuilt: base.stats, slab: base.disk instanceof SlabDisk };
    } catch (err) {
      await base.disk.close();
      throw err;
    }
    const filled = o.fill === false
      ? Promise.resolve()
      : fillImage(demand, ref, digest, manifest, objects, {
        ...o.fillOptions, signal: stop.signal, first: profile?.order,
        onError: o.fillOptions?.onError ?? ((err) => process.stderr.write(`vmdn nbd: fill paused: ${(err as Error).message}\n`)),
      }).catch((err) => {
        if (!stop.signal.aborted) process.stderr.write(`vmdn nbd: fill stopped: ${(err as Error).message}\n`);
      });
    const device = opened;
    return {
      ...device, counters, filled, profile,
      close: async () => {
        stop.abort();
        await filled;
        try {
          await device.close();
        } finally {
          await remote.close();
          await peers?.close();
        }
      },
    };
  } catch (err) {
    await opened?.close();
    await remote.close();
    await peers?.close();
    throw err;
  }
}

/** The origin's profile for the image, fetched (verified, kept in the cache) and checked; any failure is a warning and no profile. */
async function originProfile(remote: HttpStore, store: CachingStore, digest: Digest, manifest: Manifest, warn: (msg: string) => void): Promise<LoadedProfile | undefined> {
  let pointer: Digest | undefined;
  try {
    pointer = await remote.profile(digest);
  } catch (err) {
    warn(`boot profile unavailable, prefetching in disk order: ${(err as Error).message}`);
    return undefined;
  }
  return pointer ? loadProfile(store, pointer, digest, manifest, warn) : undefined;
}
