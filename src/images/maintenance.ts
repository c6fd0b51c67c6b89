/** Store upkeep: garbage collection, full verification and totals. */
import fs from 'node:fs/promises';
import type { LocalStore } from '../store/local/local-store.js';
import { isDigest, type Digest } from '../store/digest.js';
import { decodeManifest } from '../model/manifest.js';
import { loadTree, namedObjects, type ObjectRole } from '../model/objects.js';
import { treeDigests } from '../model/files-tree.js';
import { asVmdnError } from '../errors.js';
import type { OnProgress } from '../util/progress.js';
import { packGarbage, packLoose, repack, type RepackResult } from '../store/local/pack-gc.js';

export interface GcResult {
  removedObjects: number;
  /** Loose files' bytes and pack bytes given back. */
  freedBytes: number;
  removedTmpFiles: number;
  /** Packs rewritten because most of them was garbage (pack-gc.ts), and packs unlinked (those included). */
  repackedPacks: number;
  removedPacks: number;
  /** Loose objects moved into a pack (with `packLoose`). */
  packedLoose: number;
}

/**
 * Delete every object no named image needs, and temp files of dead processes.
 * Holds the store alone (lease.ts): a writer's objects are unnamed until its
 * last step, so gc must not run beside one. Each batch of deletes re-checks in
 * its transaction that no image needs the rows (any more), and an object's row
 * goes before its file: a gc killed midway leaves at worst unindexed files.
 */
export async function collectGarbage(store: LocalStore, opts: { dryRun?: boolean; signal?: AbortSignal; packLoose?: boolean } = {}): Promise<GcResult> {
  if (opts.dryRun) return sweep(store, true);
  return store.exclusive(async () => {
    const r = await sweep(store, false);
    if (opts.packLoose) r.packedLoose = packLoose(store);
    return r;
  }, opts.signal);
}

const DELETE_BATCH = 512;

async function sweep(store: LocalStore, dryRun: boolean): Promise<GcResult> {
  // a boot profile lives as long as some name keeps its manifest (docs/format.md)
  if (!dryRun) store.index.dropUnnamedProfiles();
  const live = store.index.liveDigests();
  const res: GcResult = { removedObjects: 0, freedBytes: 0, removedTmpFiles: 0, repackedPacks: 0, removedPacks: 0, packedLoose: 0 };
  const files = new Set<Digest>();
  // a stray non-digest file is left for verify to report
  for await (const f of store.objectFiles()) if (isDigest(f.digest) && !live.has(f.digest)) files.add(f.digest);
  const rows = new Map(store.index.listObjects().filter((o) => !live.has(o.digest)).map((o) => [o.digest, o]));
  // index rows whose files vanished go too
  const dead = [...new Set([...files, ...rows.keys()])];
  // a packed object's bytes are freed by the repack below, a loose one's with its file
  const count = (d: Digest) => {
    const packed = rows.get(d)?.pack !== undefined;
    if (!files.has(d) && !packed) return;
    res.removedObjects++;
    if (files.has(d)) res.freedBytes += rows.get(d)?.storedSize ?? 0;
  };
  const repacked = (r: RepackResult) => {
    res.repackedPacks = r.repackedPacks;
    res.removedPacks = r.removedPacks;
    res.freedBytes += r.freedPackBytes;
  };
  if (dryRun) {
    dead.forEach(count);
    // as if the dead rows were gone: their bytes count as garbage
    const use = store.index.packUse();
    for (const o of rows.values()) {
      const u = o.pack !== undefined ? use.get(o.pack) : undefined;
      if (u) (u.objects--, (u.bytes -= o.storedSize));
    }
    repacked(repack(store, true, use));
    return res;
  }
  for (let i = 0; i < dead.length; i += DELETE_BATCH) {
    for (const d of store.index.deleteUnreferenced(dead.slice(i, i + DELETE_BATCH))) {
      count(d);
      await fs.rm(store.objectPath(d), { force: true });
    }
  }
  repacked(repack(store, false));
  res.removedTmpFiles = await store.cleanTmp();
  return res;
}

export interface VerifyProblem {
  digest: Digest;
  problem: 'corrupt' | 'missing' | 'unindexed' | 'bad-manifest';
  detail: string;
  image?: string;
}

export interface VerifyResult {
  objectsChecked: number;
  bytesChecked: number;
  imagesChecked: number;
  problems: VerifyProblem[];
  /** Pack bytes no index row points at (left by crashes, refused downloads, deletes): not a problem; gc's repack reclaims them. */
  packGarbageBytes: number;
}

/** Re-hash every object (loose files and packed rows), and check every image's manifest and references. */
export async function verifyStore(store: LocalStore, opts: { signal?: AbortSignal; onProgress?: OnProgress; concurrency?: number } = {}): Promise<VerifyResult> {
  const res: VerifyResult = { objectsChecked: 0, bytesChecked: 0, imagesChecked: 0, problems: [], packGarbageBytes: 0 };
  const indexed = new Map(store.index.listObjects().map((o) => [o.digest, o]));
  const onDisk = new Set<Digest>();
  const total = indexed.size;
  const running = new Set<Promise<void>>();
  async function* everyObject(): AsyncIterable<{ digest: Digest; loose: boolean }> {
    for await (const f of store.objectFiles()) yield { digest: f.digest, loose: true };
    // in pack order: one stretch of a pack after another
    const packed = [...indexed.values()].filter((o) => o.pack !== undefined).sort((a, b) => (a.pack! < b.pack! ? -1 : a.pack! > b.pack! ? 1 : a.offset! - b.offset!));
    for (const o of packed) yield { digest: o.digest, loose: false };
  }
  for await (const f of everyObject()) {
    opts.signal?.throwIfAborted();
    onDisk.add(f.digest);
    const p = store.verifyObject(f.digest, { loose: f.loose }).then(
      (r) => {
        res.objectsChecked++;
        res.bytesChecked += r.size;
        if (!indexed.has(f.digest)) res.problems.push({ digest: f.digest, problem: 'unindexed', detail: 'valid object file missing from the index (left by an interrupted import; gc removes it)' });
        opts.onProgress?.({ phase: 'verify', done: res.objectsChecked, total, unit: 'objects' });
      },
      (err) => {
        res.objectsChecked++;
        const e = asVmdnError(err);
        // a packed row whose pack is gone: reported as missing below
        if (e.code === 'E_NOT_FOUND' && !f.loose) onDisk.delete(f.digest);
        else res.problems.push({ digest: f.digest, problem: 'corrupt', detail: e.message });
      },
    );
    running.add(p);
    p.finally(() => running.delete(p));
    if (running.size >= (opts.concurrency ?? 16)) await Promise.race(running);
  }
  await Promise.all(running);
  res.packGarbageBytes = packGarbage(store, indexed.values()).bytes;
  for (const d of indexed.keys()) if (!onDisk.has(d)) res.problems.push({ digest: d, problem: 'missing', detail: 'indexed object has no file' });
  for (const img of store.index.listImages()) {
    const ref = `${img.name}:${img.tag}`;
    res.imagesChecked++;
    if (!onDisk.has(img.manifest)) {
      res.problems.push({ digest: img.manifest, problem: 'missing', detail: 'manifest object missing', image: ref });
      continue;
    }
    try {
      const m = decodeManifest(await store.get(img.manifest));
      const missing = (d: Digest, role: ObjectRole) => res.problems.push({ digest: d, problem: 'missing', detail: `${role} object referenced by image is missing`, image: ref });
      for (const [d, role] of namedObjects(m)) if (!onDisk.has(d)) missing(d, role);
      // file content is named by the trees: read those that are here (a missing one is reported above)
      for (const f of m.filesystems ?? []) {
        if (![...f.tree, ...f.times].every((d) => onDisk.has(d))) continue;
        const records = await loadTree(f, store, opts.signal).catch((err) => {
          res.problems.push({ digest: f.tree[0] ?? img.manifest, problem: 'bad-manifest', detail: `filesystem ${f.index}: ${asVmdnError(err).message}`, image: ref });
          return [];
        });
        for (const d of treeDigests(records)) if (!onDisk.has(d)) missing(d, 'file-content');
      }
    } catch (err) {
      res.problems.push({ digest: img.manifest, problem: 'bad-manifest', detail: asVmdnError(err).message, image: ref });
    }
  }
  // one line per missing digest and image is enough
  const seen = new Set<string>();
  res.problems = res.problems.filter((p) => !seen.has(`${p.digest} ${p.problem} ${p.image ?? ""}`) && seen.add(`${p.digest} ${p.problem} ${p.image ?? ""}`));
  return res;
}

export interface StoreStats {
  images: number;
  objects: number;
  /** Uncompressed bytes of all objects. */
  objectBytes: number;
  /** Bytes on disk (compressed). */
  storedBytes: number;
  /** Sum of the images' non-zero data, what a naive store would keep uncompressed. */
  logicalBytes: number;
  virtualBytes: number;
}

export function storeStats(store: LocalStore): StoreStats {
  const t = store.index.totals();
  const imgs = store.index.listImages();
  return {
    images: imgs.length,
    objects: t.objects,
    objectBytes: t.size,
    storedBytes: t.stored,
    logicalBytes: imgs.reduce((n, i) => n + i.dataSize, 0),
    virtualBytes: imgs.reduce((n, i) => n + i.virtualSize, 0),
  };
}
