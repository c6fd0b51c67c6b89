/**
 * Pull an image from a vmdn server into a file: resolve the name, fetch the
 * manifest, take every chunk the local cache already holds, cut seed images
 * with the manifest's chunker and take the chunks that match (as casync's
 * seeds do), download the rest in parallel over keep-alive connections into
 * the cache (each verified, each kept by atomic rename, so an interrupted pull
 * resumes where it stopped). A raw output is written as the objects arrive;
 * other formats are assembled from the cache afterwards.
 */
import { openDisk } from '../../container/open.js';
import type { LocalStore } from '../../store/local/local-store.js';
import { sha256, type Digest } from '../../store/digest.js';
import { formatImageRef, type ImageRef } from '../../store/image-name.js';
import { presentIn, type PutResult, type WritableStore } from '../../store/types.js';
import { importChunks } from '../../strategy/chunks/import.js';
import { parseChunkerSpec } from '../../strategy/chunker.js';
import { dataBytes, decodeManifest, type Manifest } from '../../model/manifest.js';
import { imageObjects } from '../../model/objects.js';
import type { TreeRecord } from '../../model/files-tree.js';
import path from 'node:path';
import { planCuts } from '../../strategy/chunks/strategy.js';
import { placesChunksDirectly } from '../../strategy/registry.js';
import { nameImage } from '../../images/names.js';
import { writeImage } from '../../images/export.js';
import { formatFromPath, openWriter, type OutputFormat } from '../../container/writers.js';
import type { OnProgress } from '../../util/progress.js';
import { CachingStore } from '../../store/cache/caching-store.js';
import { placement, pullObjects } from './pull-objects.js';
import { PackPuller, type PackStats } from './pull-packs.js';
import type { DiskWriter } from '../../container/disk.js';
import { HttpStore, type HttpStoreOptions } from './http-store.js';
import { VmdnError } from '../../errors.js';
import { Peers, type PeerStats } from './peers.js';

/** Per-request overhead dominates for ~64 KiB objects: more requests in flight keep both ends busy (bench/net.ts). */
export const DEFAULT_CONCURRENCY = 32;

export interface PullOptions {
  url: string;
  ref: ImageRef;
  /** Output file; omitted: only fill the cache (and name the image there). */
  out?: string;
  format?: string;
  cache: LocalStore;
  seeds?: string[];
  /** Parallel object downloads. */
  concurrency?: number;
  http?: HttpStoreOptions;
  /** Ask for what is missing in packs compressed against the cache's images (default true; pack.ts). */
  packs?: boolean;
  /** Other sites' vmdn servers asked for objects before the origin (docs/p2p.md); the names and manifest still come from `url`. */
  peers?: string[];
  signal?: AbortSignal;
  onProgress?: OnProgress;
}

export interface PullResult {
  ref: string;
  manifest: Digest;
  out?: string;
  format?: OutputFormat;
  virtualSize: number;
  /** Bytes of non-zero data in the image, and compressed bytes of all its distinct objects. */
  imageDataBytes: number;
  imageStoredBytes: number;
  objects: { total: number; cached: number; seeded: number; downloaded: number };
  /** Encoded bytes received over the network (objects and manifest, including refetches). */
  bytesDownloaded: number;
  bytesSeeded: number;
  corruptRefetched: number;
  /** What came in packs (included in objects.downloaded and bytesDownloaded). */
  packs: PackStats;
  /** With peers: what came from each, and from the origin (bytesDownloaded counts both). */
  p2p?: P2pStats;
  seconds: number;
  /**
   * Wall seconds per phase: resolve + manifest, seeds, downloads, writing the image.
   * A raw output is written during the download; its write phase is only the
   * final flush to disk (fsync) and rename.
   */
  phases: { resolve: number; seeds: number; download: number; write: number };
}

export interface P2pStats {
  origin: { objects: number; bytes: number };
  /** Sums over the peers. */
  objects: number;
  bytes: number;
  failures: number;
  corrupt: number;
  peers: PeerStats[];
}

/** Holds the cache's writer lease throughout: gc must not delete objects the pull counts on before the name keeps them. */
export async function pullImage(o: PullOptions): Promise<PullResult> {
  return o.cache.writing(() => pullLeased(o), o.signal);
}

async function pullLeased(o: PullOptions): Promise<PullResult> {
  const t0 = Date.now();
  // the workers boot (~0.15 s) while the name, the manifest and the index are looked up: the first batch finds them up
  o.cache.codecPool();
  // one keep-alive connection per parallel download
  const remote = new HttpStore(o.url, { connections: o.concurrency ?? DEFAULT_CONCURRENCY, ...o.http });
  const store = await CachingStore.open(o.cache, remote);
  const peers = o.peers?.length ? new Peers(o.peers) : undefined;
  try {
    const digest = await remote.resolve(o.ref, o.signal);
    // a peer that does not hold the image sits this pull out (advertised per image, not per object)
    await peers?.probe(digest, o.signal);
    const packs = o.packs === false || !o.cache.canCopyTo ? undefined : new PackPuller(remote, o.cache, o.ref.name, o.signal);
    await packs?.manifest(digest);
    const manifest = decodeManifest(await store.get(digest, { signal: o.signal }), `${o.url} ${digest.slice(0, 12)}`);
    const lap = laps();
    // the trees arrive (in packs, or through the cache below) before the cache is asked what it holds: count them as downloads
    const treeNames = new Set((manifest.filesystems ?? []).flatMap((f) => [...f.tree, ...f.times]));
    const treesFetched = treeNames.size - (await presentIn(o.cache, treeNames)).size;
    await packs?.trees(manifest, digest);
    // a files manifest names its tree objects; fetching those (through the cache) gives the rest
    const trees: TreeRecord[][] = [];
    const chunks = await imageObjects(manifest, store, { signal: o.signal, trees });
    const present = await presentIn(o.cache, chunks);
    const missing = new Set([...chunks].filter((d) => !present.has(d)));
    const cached = chunks.size - missing.size - treesFetched;
    const wanted = missing.size;
    let seeded = 0;
    let bytesSeeded = 0;
    for (const seed of o.seeds ?? []) {
      if (missing.size === 0) break;
      const r = await takeFromSeed(seed, manifest, o.cache, missing, o.signal);
      seeded += r.objects;
      bytesSeeded += r.bytes;
    }
    // what no seed had: in packs, against the images the cache holds
    await packs?.objects(manifest, digest, missing, trees);
    const tSeeds = lap();
    const toFetch = [...missing];
    let format: OutputFormat | undefined;
    let writer: DiskWriter | undefined;
    let tDownload = 0;
    if (o.out) {
      format = outputFormat(o.out, o.format, manifest);
      writer = await openWriter(o.out, manifest.virtualSize, format);
    }
    // a plain output file is written during the download (pull-objects.ts); anything else is assembled after it
    const target = writer?.directTarget && placesChunksDirectly(manifest) && o.cache.canCopyTo ? writer.directTarget : undefined;
    try {
      const held = target ? [...chunks].filter((d) => !missing.has(d)) : [];
      await pullObjects(toFetch, held, {
        remote, cache: o.cache, concurrency: o.concurrency ?? DEFAULT_CONCURRENCY, place: target ? placement(manifest, target) : undefined, peers,
        signal: o.signal, onProgress: o.onProgress,
      });
      // name it in the cache too: the cache is a full store, `vmdn export` works offline afterwards
      await nameImage(o.cache, o.ref, digest, manifest, chunks);
      tDownload = lap();
      if (target) {
        await o.cache.releaseTarget(target);
        await writer!.finish();
      } else if (writer) {
        // every object is local now: assemble from the cache itself (its codec workers decode)
        await writeImage(manifest, o.cache, writer, { signal: o.signal, onProgress: o.onProgress, workDir: path.dirname(path.resolve(o.out!)) });
      }
    } catch (err) {
      if (target) await o.cache.releaseTarget(target).catch(() => {});
      await writer?.abort().catch(() => {});
      throw err;
    }
    const tWrite = lap();
    // one query summing every object's stored size, not a row per object
    const imageStoredBytes = await o.cache.storedBytes(chunks);
    const p2p = peers && p2pStats(peers.stats(), remote.stats.objectsFetched, remote.stats.bytesFetched);
    return {
      ref: formatImageRef(o.ref), manifest: digest, out: o.out, format, virtualSize: manifest.virtualSize,
      imageDataBytes: dataBytes(manifest), imageStoredBytes,
      objects: { total: chunks.size, cached, seeded, downloaded: wanted - seeded + treesFetched },
      bytesDownloaded: remote.stats.bytesFetched + (p2p?.bytes ?? 0), bytesSeeded, corruptRefetched: remote.stats.corrupt,
      packs: packs?.stats ?? { packs: 0, objects: 0, bytes: 0, rejected: 0 },
      ...(p2p ? { p2p } : {}),
      seconds: (Date.now() - t0) / 1000,
      phases: { resolve: (Date.now() - t0) / 1000 - tSeeds - tDownload - tWrite, seeds: tSeeds, download: tDownload, write: tWrite },
    };
  } finally {
    // the cache belongs to the caller; only the connections are ours
    await remote.close();
    await peers?.close();
  }
}

function p2pStats(peers: PeerStats[], objects: number, bytes: number): P2pStats {
  const sum = (k: 'objects' | 'bytes' | 'failures' | 'corrupt') => peers.reduce((n, p) => n + p[k], 0);
  return { origin: { objects, bytes }, objects: sum('objects'), bytes: sum('bytes'), failures: sum('failures'), corrupt: sum('corrupt'), peers };
}

/** Seconds since the previous call (the first since creation). */
function laps(): () => number {
  let last = Date.now();
  return () => {
    const now = Date.now();
    const s = (now - last) / 1000;
    last = now;
    return s;
  };
}

function outputFormat(out: string, explicit: string | undefined, m: Manifest): OutputFormat {
  try {
    return formatFromPath(out, explicit);
  } catch (err) {
    if (explicit || !(err instanceof VmdnError) || err.code !== 'E_USAGE') throw err;
    return m.source.format === 'qcow2' ? 'qcow2' : 'raw';
  }
}

/**
 * Cut a seed image with the manifest's chunker; chunks whose digest the
 * manifest needs and the cache lacks are stored, everything else is only
 * hashed. Stops early once nothing is missing.
 */
async function takeFromSeed(file: string, m: Manifest, cache: LocalStore, missing: Set<Digest>, signal?: AbortSignal): Promise<{ objects: number; bytes: number }> {
  const disk = await openDisk(file);
  const ac = new AbortController();
  const onAbort = () => ac.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  let objects = 0;
  let bytes = 0;
  const sink: WritableStore = {
    async put(data: Uint8Array): Promise<PutResult> {
      const digest = sha256(data);
      if (!missing.has(digest)) return { digest, size: data.length, storedSize: 0, added: false };
      missing.delete(digest);
      const r = await cache.put(data, { digest });
      objects++;
      bytes += data.length;
      if (missing.size === 0) ac.abort();
      return r;
    },
    putEncoded: () => Promise.reject(new Error('unused')),
    has: async () => false,
    stat: async () => undefined,
    get: () => Promise.reject(new Error('unused')),
    getEncoded: () => Promise.reject(new Error('unused')),
    close: async () => {},
  };
  try {
    // cut the seed the way the image was cut, or its file-aligned chunks would never match
    // (a files manifest's contents are whole-file chunks: cut every file of the seed alike)
    const cuts = m.filesystems?.length ? { by: 'files' as const, minFile: 0, sparsify: false } : m.cuts;
    const { layout } = await planCuts(disk, cuts, ac.signal);
    await importChunks(disk, sink, { chunker: parseChunkerSpec(m.chunker), layout, signal: ac.signal });
  } catch (err) {
    if (!ac.signal.aborted || signal?.aborted) throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await disk.close();
  }
  return { objects, bytes };
}
