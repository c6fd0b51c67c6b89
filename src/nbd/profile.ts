/**
 * Boot profiles on the NBD side (docs/nbd.md, format in docs/format.md).
 *
 * Recording: a ProfileRecorder is told every range a client reads from the
 * image (BlockDevice.onBaseRead), maps it to the manifest's chunks and keeps
 * each object the first time it is touched, with the milliseconds since
 * the recording started. `save` stores the list as an object and points the
 * manifest at it (a newer recording replaces the pointer). `vmdn nbd
 * --record-profile` uses it, and so can anything else that serves a
 * BlockDevice (vmdn boot).
 *
 * Replay: `loadProfile` fetches the profile an origin names for a manifest
 * and checks it; anything wrong with it is a warning, never a failure: the
 * fill then goes in disk order.
 */
import type { LocalStore } from '../store/local/local-store.js';
import type { Digest } from '../store/digest.js';
import type { ReadableStore } from '../store/types.js';
import type { Manifest } from '../model/manifest.js';
import type { BlockDevice } from './device.js';
import { lastAtOrBefore } from '../util/search.js';
import { decodeProfile, encodeProfile, PROFILE_KIND, PROFILE_VERSION, MAX_PROFILE_MS } from '../model/profile.js';

export class ProfileRecorder {
  private readonly starts: Float64Array;
  private readonly seen = new Set<Digest>();
  private readonly reads: Array<[number, Digest]> = [];
  private readonly t0 = performance.now();

  constructor(private readonly manifest: Manifest, readonly manifestDigest: Digest) {
    this.starts = Float64Array.from(manifest.chunks, (c) => c[0]);
  }

  /** A recorder fed by every base read of an opened device (openStoredDevice, openRemoteDevice). */
  static attach(opened: { device: BlockDevice; image: Manifest; manifest: Digest }): ProfileRecorder {
    const rec = new ProfileRecorder(opened.image, opened.manifest);
    opened.device.onBaseRead = (offset, length) => rec.touch(offset, length);
    return rec;
  }

  /** Objects recorded so far. */
  get count(): number {
    return this.reads.length;
  }

  /** The recorded digests, in first-read order. */
  get digests(): Digest[] {
    return this.reads.map(([, d]) => d);
  }

  /** A client read `length` bytes at `offset` of the image (not the overlay). */
  touch(offset: number, length: number): void {
    const chunks = this.manifest.chunks;
    const end = offset + length;
    const ms = Math.min(MAX_PROFILE_MS, Math.round(performance.now() - this.t0));
    for (let i = Math.max(0, this.find(offset)); i < chunks.length && chunks[i]![0] < end; i++) {
      const [o, l, d] = chunks[i]!;
      if (o + l <= offset || this.seen.has(d)) continue;
      this.seen.add(d);
      // times never go backwards, even if the clock source does
      this.reads.push([Math.max(ms, this.reads.at(-1)?.[0] ?? 0), d]);
    }
  }

  /** Index of the last chunk starting at or before `offset`, or -1. */
  private find(offset: number): number {
    return lastAtOrBefore(this.starts, offset);
  }

  encode(): Uint8Array {
    return encodeProfile({ kind: PROFILE_KIND, version: PROFILE_VERSION, manifest: this.manifestDigest, reads: [...this.reads] });
  }

  /**
   * Store the profile as an object and point the manifest at it, under the
   * store's writer lease (gc must not take the object before the pointer
   * keeps it). Nothing is stored when nothing was read: an empty profile
   * would only replace a useful one. Returns the profile's digest.
   */
  async save(store: LocalStore): Promise<Digest | undefined> {
    if (this.reads.length === 0) return undefined;
    const bytes = this.encode();
    return store.writing(async () => {
      const { digest } = await store.put(bytes);
      await store.setProfile(this.manifestDigest, digest);
      return digest;
    });
  }
}

/** A profile accepted for replay: the objects in the order to prefetch them. */
export interface LoadedProfile {
  digest: Digest;
  order: Digest[];
}

/**
 * The profile `pointer` names, fetched through `store` (verified by hash)
 * and checked against the image; undefined, after telling `warn`, if it is
 * unusable (missing object, corrupt, for another image, bad fields).
 */
export async function loadProfile(store: ReadableStore, pointer: Digest, manifestDigest: Digest, manifest: Manifest, warn: (msg: string) => void): Promise<LoadedProfile | undefined> {
  try {
    const bytes = await store.get(pointer);
    const chunks = new Set(manifest.chunks.map((c) => c[2]));
    const p = decodeProfile(bytes, `profile ${pointer.slice(0, 12)}`, { manifest: manifestDigest, chunks });
    return { digest: pointer, order: p.reads.map(([, d]) => d) };
  } catch (err) {
    warn(`boot profile ${pointer.slice(0, 12)} refused, prefetching in disk order: ${(err as Error).message}`);
    return undefined;
  }
}
