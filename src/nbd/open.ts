/**
 * A stored image as the BlockDevice NBD serves: the manifest resolved by name,
 * its chunks read through ManifestDisk (fetched from the store and verified by
 * hash), its rebuilt filesystems (files/packages images) through RebuiltDisk, writes into an overlay file of the user's, a temporary one (removed on
 * close), or refused (read-only).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ImageNames, ReadableStore } from '../store/types.js';
import type { ImageRef } from '../store/image-name.js';
import type { Disk } from '../container/disk.js';
import { resolveImage } from '../images/names.js';
import { ManifestDisk } from '../images/manifest-disk.js';
import { LocalStore } from '../store/local/local-store.js';
import { Slab } from '../store/local/slab.js';
import { SlabReads } from '../store/local/slab-reads.js';
import { SlabDisk } from './slab-disk.js';
import type { Manifest } from '../model/manifest.js';
import { AllocationMap } from './allocation.js';
import { RebuiltDisk, type RebuiltStats } from './rebuilt.js';
import { BlockDevice } from './device.js';
import { Overlay } from './overlay.js';
import { isProcessAlive } from '../util/process.js';

export interface OpenedDevice {
  device: BlockDevice;
  manifest: string;
  /** The image's manifest, decoded (a ProfileRecorder maps reads to its chunks). */
  image: Manifest;
  /** The overlay file, if writes are accepted. */
  overlay?: string;
  temporaryOverlay: boolean;
  /** Files/packages images: how their filesystems' metadata was built before the first read. */
  rebuilt?: RebuiltStats;
  /** The base is read through the slab (a chunks image whose objects are all in a local store). */
  slab?: boolean;
  /** Flush and close the overlay (a temporary one is deleted). */
  close(): Promise<void>;
}

/** Decoded chunks kept per device: readers come back to the same metadata chunks often. */
export const CHUNK_CACHE_ENTRIES = 32;
/** Chunk bytes decoded ahead of a client reading in order (ManifestDisk.readAhead). */
const READ_AHEAD_BYTES = 4 << 20;
/**
 * A local store's chunks image is served from a slab (SlabDisk): its size bounds the
 * decoded chunks in memory (cache, read-ahead, replies on their way); past it, reads
 * fall back to buffers of their own. Read-ahead is larger there: the workers keep
 * decoding while the client writes what it got.
 */
const SLAB = { bytes: 80 << 20, cacheBytes: 8 << 20, aheadBytes: 16 << 20 };

/**
 * The slab's sizes; `VMDN_NBD_SLAB_MIB=N` (a test and tuning knob) sets the slab to N MiB, and
 * the cache and read-ahead shrink with it (a tenth, a fifth), so a tiny slab reuses its slots
 * constantly rather than being filled by the cache alone.
 */
export function slabSizes(env = process.env): typeof SLAB {
  const mib = Number(env.VMDN_NBD_SLAB_MIB);
  if (!env.VMDN_NBD_SLAB_MIB || !Number.isFinite(mib) || mib <= 0) return SLAB;
  const bytes = Math.round(mib * 2 ** 20);
  return { bytes, cacheBytes: Math.min(SLAB.cacheBytes, Math.floor(bytes / 10)), aheadBytes: Math.min(SLAB.aheadBytes, Math.floor(bytes / 5)) };
}

export async function openStoredDevice(
  store: ReadableStore & { names: ImageNames },
  ref: ImageRef,
  opts: { overlay?: string; readOnly?: boolean },
): Promise<OpenedDevice> {
  const { digest, manifest } = await resolveImage(store, ref);
  const base = await openBase(manifest, store);
  return { ...(await deviceOver(base.disk, digest, manifest, opts)), rebuilt: base.stats, slab: base.disk instanceof SlabDisk };
}

/**
 * The disk a manifest reads as: its chunks (chunk strategy), or, for files
 * and packages images, their filesystems' metadata rebuilt into a private
 * work directory (removed on close; a killed server's is removed by the next
 * one, like its overlay) with big files' content read from their chunks.
 */
export async function openBase(manifest: Manifest, store: ReadableStore): Promise<{ disk: Disk; stats?: RebuiltStats }> {
  if (!manifest.filesystems?.length && store instanceof LocalStore && store.canCopyTo && process.env.VMDN_NBD_SLAB !== '0') {
    const sizes = slabSizes();
    return { disk: new SlabDisk(manifest, new SlabReads(store, new Slab(sizes.bytes)), sizes) };
  }
  if (!manifest.filesystems?.length) return { disk: new ManifestDisk(manifest, store, CHUNK_CACHE_ENTRIES, READ_AHEAD_BYTES) };
  removeStaleOverlays();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `${TMP_PREFIX}${process.pid}-`));
  let disk: RebuiltDisk;
  try {
    disk = await RebuiltDisk.open(manifest, store, work, CHUNK_CACHE_ENTRIES);
  } catch (err) {
    fs.rmSync(work, { recursive: true, force: true });
    throw err;
  }
  const base: Disk = {
    format: disk.format, virtualSize: disk.virtualSize, clusterSize: disk.clusterSize,
    extents: () => disk.extents(),
    read: (o, l) => disk.read(o, l),
    close: async () => {
      try {
        await disk.close();
      } finally {
        fs.rmSync(work, { recursive: true, force: true });
      }
    },
  };
  return { disk: base, stats: disk.stats };
}

/** A base disk with the overlay the options ask for (a temporary one, the user's file, or none). */
export async function deviceOver(base: Disk, digest: string, image: Manifest, opts: { overlay?: string; readOnly?: boolean }): Promise<OpenedDevice> {
  if (opts.readOnly) {
    return { device: new BlockDevice(base, null, AllocationMap.ofManifest(image, MIN_HOLE)), manifest: digest, image, temporaryOverlay: false, close: () => base.close() };
  }
  if (!opts.overlay) removeStaleOverlays();
  const tmp = opts.overlay ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), `${TMP_PREFIX}${process.pid}-`));
  const file = opts.overlay ?? path.join(tmp!, 'overlay');
  let overlay: Overlay;
  try {
    overlay = await Overlay.open(file, image.virtualSize, digest);
  } catch (err) {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return {
    device: new BlockDevice(base, overlay, AllocationMap.ofManifest(image, MIN_HOLE)),
    manifest: digest,
    image,
    overlay: file,
    temporaryOverlay: !!tmp,
    close: async () => {
      try {
        await overlay.close();
        await base.close();
      } finally {
        if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
      }
    },
  };
}

const TMP_PREFIX = 'vmdn-nbd-';
/** Holes shorter than this are reported (and sent) as data: see AllocationMap.ofManifest. */
const MIN_HOLE = 64 << 10;

/**
 * Temporary overlays of servers that were killed (SIGKILL leaves no chance to
 * clean up): their directories carry the pid, and the next server removes
 * those of dead processes that belong to this user. They hold guest writes
 * nobody can reach any more.
 */
export function removeStaleOverlays(dir = os.tmpdir()): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const pid = Number(new RegExp(`^${TMP_PREFIX}(\\d+)-`).exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || isProcessAlive(pid)) continue;
    const p = path.join(dir, name);
    try {
      const st = fs.lstatSync(p);
      if (!st.isDirectory() || st.uid !== process.getuid?.()) continue;
      fs.rmSync(p, { recursive: true, force: true });
      removed.push(p);
    } catch {
      // gone meanwhile, or not ours to remove
    }
  }
  return removed;
}

