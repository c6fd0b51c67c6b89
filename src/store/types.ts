/**
 * Object stores, layered by capability so that backends and caches can wrap
 * each other: a remote HTTP store is only Readable, a local directory is
 * Prunable, a cache is a Writable in front of a Readable.
 *
 * Objects are immutable, addressed by the SHA-256 of their uncompressed bytes
 * and kept zstd-compressed ("encoded"). Every read verifies the hash.
 */
import type { Digest } from './digest.js';

export interface ObjectStat {
  digest: Digest;
  /** Uncompressed size. */
  size: number;
  /** Encoded (compressed) size as stored and served. */
  storedSize: number;
}

export interface ReadOptions {
  signal?: AbortSignal;
}

export interface ReadableStore {
  has(digest: Digest): Promise<boolean>;
  stat(digest: Digest): Promise<ObjectStat | undefined>;
  /** Uncompressed bytes, verified against the digest (E_CORRUPT_OBJECT otherwise; E_NOT_FOUND if absent). */
  get(digest: Digest, opts?: ReadOptions): Promise<Uint8Array>;
  /** Encoded bytes as stored (what an origin serves); not decoded, so callers verify on use. */
  getEncoded(digest: Digest, opts?: ReadOptions): Promise<Uint8Array>;
  close(): Promise<void>;
}

export interface PutResult extends ObjectStat {
  /** False when the object was already present (nothing written). */
  added: boolean;
}

export interface WritableStore extends ReadableStore {
  /** Store uncompressed bytes; `digest`, when the caller already hashed, is trusted only by the local importer path. */
  put(data: Uint8Array, opts?: { digest?: Digest } & ReadOptions): Promise<PutResult>;
  /** Store already-encoded bytes (a pull-through cache); decoded and verified before it is kept. */
  putEncoded(digest: Digest, encoded: Uint8Array, opts?: ReadOptions): Promise<PutResult>;
}

export interface PrunableStore extends WritableStore {
  delete(digest: Digest): Promise<void>;
  list(): AsyncIterable<ObjectStat>;
}

/** Optional capability: decode, verify and write an object straight into a file (worker threads). */
export interface CopyToFile {
  readonly canCopyTo: boolean;
  copyTo(digest: Digest, outPath: string, offset: number): Promise<number>;
  /** `length`: refuse (before writing) an object of any other size. */
  copyToFd(digest: Digest, fd: number, offset: number, length?: number): Promise<number>;
  releaseTarget(outPath: string): Promise<void>;
  /** Many objects per call (`length`: each refused before it is written unless it has that size); resolves to the bytes placed. */
  copyRuns?(items: Array<{ digest: Digest; offset: number; length: number }>, to: { outPath?: string; fd?: number }): Promise<number>;
  /**
   * copyRuns for all of an image's chunks at once (best in output order), batched and spread over the
   * workers by the store; `onBatch` is told the bytes of each batch as it lands. Fails whole on the first bad object.
   */
  copyAll?(
    items: Array<{ digest: Digest; offset: number; length: number }>,
    to: { outPath?: string; fd?: number },
    opts?: { signal?: AbortSignal; onBatch?: (bytes: number) => void },
  ): Promise<number>;
}

/** Optional capability: read objects ahead into the OS page cache, so the codec workers that need them later do not wait on the disk. */
export interface Prefetch {
  /** Stops after about `maxBytes` (read ahead too far, the first objects would be evicted before use). */
  prefetch(digests: Iterable<Digest>, opts?: ReadOptions & { maxBytes?: number }): Promise<void>;
}

/** Optional capability: many objects' get() at once (far fewer trips to codec workers); each entry its bytes or its error. */
export interface GetMany {
  getMany(digests: Digest[], opts?: ReadOptions): Promise<Array<Uint8Array | Error>>;
}

/**
 * Optional capability of a store that fetches from elsewhere (nbd's DemandStore):
 * whether an object is already here. Read-ahead takes only these, so guessing the
 * next reads never costs network bytes (boot profiles and the fill do that).
 */
export interface HoldsLocally {
  holdsLocally(digest: Digest): boolean;
}

/**
 * Optional capability: objects decoded into buffers the store reuses, handed to `each` in order
 * (each call awaited before the next). `bytes` is valid only until `each` settles.
 */
export interface ReadInOrder {
  readInOrder(items: Array<{ digest: Digest; length: number }>, each: (i: number, bytes: Uint8Array) => void | Promise<void>, opts?: ReadOptions): Promise<void>;
}

export function canReadInOrder(s: unknown): s is ReadInOrder {
  return typeof (s as ReadInOrder).readInOrder === 'function';
}

export function canGetMany(s: unknown): s is GetMany {
  return typeof (s as GetMany).getMany === 'function';
}

export function canPrefetch(s: unknown): s is Prefetch {
  return typeof (s as Prefetch).prefetch === 'function';
}

export function canCopyToFile(s: unknown): s is CopyToFile {
  return typeof (s as CopyToFile).copyTo === 'function' && (s as CopyToFile).canCopyTo === true;
}

/**
 * Optional capability: small records kept beside the objects, by kind and key
 * (caches of facts derived from objects, e.g. which objects a .deb became).
 * Never needed to rebuild an image: a store without it only recomputes them.
 */
export interface SideRecords {
  getRecord(kind: string, key: string): Promise<Uint8Array | undefined>;
  /** Atomic: a reader sees the old record or the new one. */
  putRecord(kind: string, key: string, data: Uint8Array): Promise<void>;
}

export function hasSideRecords(s: unknown): s is SideRecords {
  return typeof (s as SideRecords).getRecord === 'function' && typeof (s as SideRecords).putRecord === 'function';
}

/**
 * Optional capability: boot profiles (docs/format.md), one pointer per
 * manifest to the profile object recorded on it. The pointer is mutable (a
 * new recording replaces it), the object immutable; gc keeps the profile of
 * a named image like the image's own objects.
 */
export interface BootProfiles {
  getProfile(manifest: Digest): Promise<Digest | undefined>;
  /** Atomic replace; the profile object must already be in the store (E_STORE otherwise). */
  setProfile(manifest: Digest, profile: Digest): Promise<void>;
}

export function hasBootProfiles(s: unknown): s is BootProfiles {
  return typeof (s as BootProfiles).getProfile === 'function' && typeof (s as BootProfiles).setProfile === 'function';
}

/** Record kinds and keys are path-safe names (a backend may use them as file or object names). */
export const RECORD_NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** A named image: NAME:TAG -> manifest digest, with what `vmdn images` shows about it. */
export interface ImageRecord {
  name: string;
  tag: string;
  manifest: Digest;
  created: string;
  virtualSize: number;
  allocatedSize: number;
  dataSize: number;
  format: string;
}

/**
 * Image names, the one mutable part of a store. `set` records the name and its
 * manifest's references (every object the image needs, the manifest itself
 * included) in one transaction, and refuses if any of them is absent: a name
 * never points at an image that cannot be rebuilt, and gc keeps what names need.
 */
export interface ImageNames {
  list(): Promise<ImageRecord[]>;
  get(name: string, tag: string): Promise<ImageRecord | undefined>;
  set(record: ImageRecord, refs: Iterable<Digest>): Promise<void>;
  /** False when there was no such name. */
  remove(name: string, tag: string): Promise<boolean>;
}

/** Optional capability: stats of many objects in one call (an index answers in one query). */
export interface BulkStat {
  /** The present ones among `digests`. */
  statMany(digests: Iterable<Digest>): Promise<Map<Digest, ObjectStat>>;
}

/** A store that holds named images: what origins, pulls and imports write into. */
export interface ImageStore extends WritableStore, BulkStat {
  readonly names: ImageNames;
}

/** Those of `digests` that `store` holds, in one call. */
export async function presentIn(store: BulkStat, digests: Iterable<Digest>): Promise<Set<Digest>> {
  return new Set((await store.statMany(digests)).keys());
}

/** Optional capability: a writer's lease, which keeps gc away while the objects a writer adds or reuses are not yet named. */
export interface WriterLease {
  writing<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

/** Run `fn` under `store`'s writer lease when it has one. */
export function asWriter<T>(store: unknown, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  return typeof (store as WriterLease).writing === 'function' ? (store as WriterLease).writing(fn, signal) : fn();
}

/**
 * Optional capability: the local file holding an object's encoded bytes, for
 * servers that stream it or read it in another thread. The file may vanish
 * (gc, eviction): readers treat ENOENT as absent. Stores without local files
 * (S3, memory) do not have it; servers then use getEncoded.
 */
export interface EncodedFiles {
  encodedFile(digest: Digest): string;
}

export function hasEncodedFiles(s: unknown): s is EncodedFiles {
  return typeof (s as EncodedFiles).encodedFile === 'function';
}

/**
 * Optional capability: many objects' stored bytes at once, unverified (a
 * server sends them as stored; its client verifies), undefined for one not
 * held. A local store reads adjacent pack entries with one read.
 */
export interface EncodedMany {
  /** statMany, each entry also saying where the object is (opaque), so encodedMany need not look again. */
  statPlaced(digests: Iterable<Digest>): Promise<Map<Digest, ObjectStat>>;
  /** `placed`: statPlaced's answer for these digests, if the caller has it. */
  encodedMany(digests: Digest[], placed?: Map<Digest, ObjectStat>): Promise<Array<Uint8Array | undefined>>;
}

export function hasEncodedMany(s: unknown): s is EncodedMany {
  return typeof (s as EncodedMany).encodedMany === 'function';
}

/** Optional capability: counts and bytes of everything a store holds. */
export interface StoreTotals {
  totals(): Promise<{ objects: number; size: number; stored: number }>;
}
