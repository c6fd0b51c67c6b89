/**
 * An IMAGE argument as a Disk: an existing file is opened by content (raw or
 * qcow2); anything else is taken as NAME[:TAG] in the store (a directory or an S3 bucket) and read
 * through its manifest, so every inspect command works on both alike.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Disk } from '../container/disk.js';
import { openDisk } from '../container/open.js';
import { LocalStore } from '../store/local/local-store.js';
import { parseImageRef, formatImageRef } from '../store/image-name.js';
import { resolveImage } from '../images/names.js';
import { ManifestDisk } from '../images/manifest-disk.js';
import { TreeFs } from '../strategy/files/tree-fs.js';
import { loadTree } from '../model/objects.js';
import type { Manifest } from '../model/manifest.js';
import { resolveStoreDir, s3StoreUrl } from '../store/location.js';
import { S3Store } from '../store/s3/s3-store.js';
import { VmdnError } from '../errors.js';

export interface OpenedImage {
  disk: Disk;
  /** What the user named, for messages and output. */
  label: string;
  source: 'file' | 'store';
  /** Stored images only: lets diff compare chunk digests instead of bytes. */
  manifest?: Manifest;
  close(): Promise<void>;
}

/**
 * Whether an IMAGE argument names a file rather than a stored image: anything
 * that exists, except a directory given without a "/" (a stored name that
 * happens to match a directory here). FIFOs, sockets and directories named
 * as paths count as files so that opening them gives a clear usage error.
 */
export function isImagePath(p: string): boolean {
  try {
    const st = fs.statSync(p);
    return !st.isDirectory() || p.includes('/');
  } catch {
    return false;
  }
}

export async function openImage(arg: string, storeDir?: string): Promise<OpenedImage> {
  if (isImagePath(arg)) {
    const disk = await openDisk(arg);
    return { disk, label: arg, source: 'file', close: () => disk.close() };
  }
  let ref;
  try {
    ref = parseImageRef(arg);
  } catch {
    throw new VmdnError('E_NOT_FOUND', `${arg}: no such image file, and not a valid image name`, { image: arg });
  }
  // an S3 store (--store s3://...) reads the same: names and objects from the bucket, each object verified
  const s3 = s3StoreUrl(storeDir);
  const dir = s3 ?? resolveStoreDir(storeDir);
  // Opening a store creates it; a look-up must not leave an empty store behind.
  if (!s3 && !fs.existsSync(path.join(dir, 'index.db'))) {
    throw new VmdnError('E_NOT_FOUND', `${arg}: no such image file, and no store at ${dir}`, { image: arg, store: dir });
  }
  const store = s3 ? await S3Store.open(s3, { create: false }) : await LocalStore.open(dir);
  try {
    const { manifest } = await resolveImage(store, ref);
    const disk = new ManifestDisk(manifest, store);
    for (const f of manifest.filesystems ?? []) disk.trees.set(f.offset, new TreeFs(f, await loadTree(f, store), store));
    return {
      disk, label: formatImageRef(ref), source: 'store', manifest,
      close: async () => {
        await disk.close();
        await store.close();
      },
    };
  } catch (err) {
    await store.close();
    if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') {
      throw new VmdnError('E_NOT_FOUND', `${arg}: no such image file, and no image ${formatImageRef(ref)} in store ${dir}`, { image: arg, store: dir });
    }
    throw err;
  }
}

/** Open, run, always close. */
export async function withImage<T>(arg: string, storeDir: string | undefined, fn: (img: OpenedImage) => Promise<T>): Promise<T> {
  const img = await openImage(arg, storeDir);
  try {
    return await fn(img);
  } finally {
    await img.close();
  }
}
