/**
 * Background fill of a lazily served image: every object the cache lacks.
 * First the boot profile's objects, in the order a recorded run read them
 * (profile.ts), four batches at a time and without waiting for the guest:
 * they are what it is about to read. Then the rest in disk order (a guest
 * reading on tends to want what comes next), a few small batches at a
 * time, each batch waiting while a guest read waits on the origin, so the
 * guest's fetches never queue behind the fill's; after a profile, the rest
 * starts once the guest has gone quiet for 10 s (two minutes at most). An
 * unreachable origin pauses the fill (backoff), it never ends it. Once
 * every object is in the cache, the image is named there, under the cache's
 * writer lease held since the start (as pull does: gc must not take the
 * unnamed objects meanwhile), so a later pull or export needs nothing more.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalStore } from '../store/local/local-store.js';
import type { Digest } from '../store/digest.js';
import type { ImageRef } from '../store/image-name.js';
import type { Manifest } from '../model/manifest.js';
import { nameImage } from '../images/names.js';
import type { DemandStore } from './demand.js';

export interface FillOptions {
  /** Batches in flight at once (default 2): few, the guest's reads come first. */
  lanes?: number;
  /** Objects per batch (default 16; 32 for the profile's). */
  batch?: number;
  /** Pause after each batch, ms (default 0): a throttle; tests use it to catch a fill mid-way. */
  pauseMs?: number;
  /** Longest pause after a failed batch, ms (default 10 s; the first is 500 ms). */
  maxBackoffMs?: number;
  signal?: AbortSignal;
  onError?: (err: unknown) => void;
  /** After a profile: the rest waits for this long without a guest read (default 10 s: a booting guest under TCG can go seconds without one)... */
  deferQuietMs?: number;
  /** ...or this long at most (default 120 s). */
  deferMaxMs?: number;
  /** Batches of the profile's objects in flight at once (default 4): they do not wait for guest reads. */
  profileLanes?: number;
  /** Objects to fetch first, in this order (a boot profile's, checked against the image). */
  first?: Digest[];
}

/**
 * The image's distinct objects: its disk chunks in the order of their first
 * place on the disk, then every other object it needs (`objects`: a files
 * image's trees, small-file streams, packages and big files' content).
 */
export function diskOrder(manifest: Manifest, objects: Iterable<Digest> = []): Digest[] {
  const seen = new Set<Digest>();
  for (const [, , d] of [...manifest.chunks].sort((a, b) => a[0] - b[0])) seen.add(d);
  for (const d of objects) seen.add(d);
  return [...seen];
}

/** The fill's order: `first` (those of them in the image), then the rest in disk order; each object once. */
export function fillOrder(manifest: Manifest, first: Digest[] = [], objects: Iterable<Digest> = []): Digest[] {
  const disk = diskOrder(manifest, objects);
  const inImage = new Set(disk);
  return [...new Set([...first.filter((d) => inImage.has(d)), ...disk])];
}

export async function fillImage(demand: DemandStore, ref: ImageRef, digest: Digest, manifest: Manifest, objects: Set<Digest>, o: FillOptions = {}): Promise<void> {
  const cache: LocalStore = demand.store.cache;
  return cache.writing(async () => {
    const order = fillOrder(manifest, o.first, objects);
    const profiled = new Set(o.first);
    const missing = (list: Digest[]) => list.filter((d) => !cache.index.getObject(d));
    // The profile first, without yielding to guest reads: it is the guest's own next reads, in order,
    // and a prefetch that waits whenever the guest waits never gets ahead of it (measured: a boot at
    // 100 Mbit/s still missed 754 profiled objects when this phase yielded).
    const first = order.filter((d) => profiled.has(d));
    for (let todo = missing(first); todo.length; todo = missing(first)) {
      await runLanes(demand, groupsOf(todo, o.batch ?? 32), o.profileLanes ?? 4, false, profiled, o);
    }
    // After a profile, the rest waits until the guest has gone quiet (its boot is over), at most
    // deferMaxMs: fetched meanwhile it took the link and a core from a booting guest (measured at
    // 100 Mbit/s on 2 cores: login 34.8 s with the fill running, 31.3 s with no fill at all).
    if (first.length && missing(order).length) await demand.quiet(o.deferQuietMs ?? 10_000, o.deferMaxMs ?? 120_000, o.signal);
    for (let todo = missing(order); todo.length; todo = missing(order)) {
      await runLanes(demand, groupsOf(todo, o.batch ?? 16), o.lanes ?? 2, true, profiled, o);
    }
    await nameImage(cache, ref, digest, manifest, objects);
    demand.counters.fillDone = true;
  }, o.signal);
}

function groupsOf(list: Digest[], size: number): Digest[][] {
  const groups: Digest[][] = [];
  for (let i = 0; i < list.length; i += size) groups.push(list.slice(i, i + size));
  return groups;
}

/** Batches through `lanes` lanes; with `yieldToGuest`, each batch first waits while any guest read waits on the origin. */
async function runLanes(demand: DemandStore, groups: Digest[][], lanes: number, yieldToGuest: boolean, profiled: Set<Digest>, o: FillOptions): Promise<void> {
  const cache = demand.store.cache;
  const lane = async () => {
    let pause = 0;
    for (let group = groups.shift(); group; group = groups.shift()) {
      o.signal?.throwIfAborted();
      if (yieldToGuest) await demand.idle();
      try {
        await fetchGroup(demand, group.filter((d) => !cache.index.getObject(d)), profiled);
        pause = 0;
        if (o.pauseMs) await sleep(o.pauseMs, undefined, { signal: o.signal });
      } catch (err) {
        demand.counters.fillErrors++;
        o.onError?.(err);
        groups.unshift(group); // again after a pause (what arrived is skipped)
        pause = Math.min(o.maxBackoffMs ?? 10_000, pause ? pause * 2 : 500);
        await sleep(pause, undefined, { signal: o.signal });
      }
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
}

/** One batch through the caching store (verified, kept, coalesced with guest reads of the same objects). */
async function fetchGroup(demand: DemandStore, group: Digest[], profiled: Set<Digest>): Promise<void> {
  const cache = demand.store.cache;
  const pending = demand.store.fillMany(group);
  // marked before the fetch: a guest read that finds the object cached the moment it lands is a hit
  for (const d of pending.keys()) if (profiled.has(d) && !demand.demanded.has(d)) demand.profileFilled.add(d);
  const results = await Promise.allSettled([...pending].map(async ([d, p]) => {
    try {
      await p;
    } catch (err) {
      demand.profileFilled.delete(d);
      throw err;
    }
    if (demand.demanded.has(d)) return;
    demand.counters.prefilledObjects++;
    demand.counters.prefilledBytes += cache.index.getObject(d)?.storedSize ?? 0;
    demand.counters.cachedObjects++;
    if (profiled.has(d)) demand.counters.profilePrefetched++;
  }));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}
