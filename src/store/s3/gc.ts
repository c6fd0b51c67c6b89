/**
 * Garbage collection of an S3 store, safe while other processes import into
 * it and name images (docs/format.md, "S3 store: gc"). Mark: every object
 * some name's refs list. Sweep, in two runs at least `grace` apart:
 *  1. a pack older than `grace` that holds no live object (or that gc has
 *     copied its live objects out of, when more than half of it is dead) is
 *     condemned: `gc/condemned/PACK` is written. Writers do not dedup against
 *     condemned packs, and before naming an image they copy any object it
 *     needs that lives only in a condemned pack into a new pack (s3-store.ts).
 *  2. a pack condemned at least `grace` ago, none of whose objects a name
 *     needs from it alone, is deleted (index first, then the pack).
 * A writer that checked the condemned list less than `grace` before its name
 * landed is therefore seen by the run that deletes; one slower than that
 * finds the object gone and fails to name (never a name without objects).
 * Clocks: pack and record times are the server's; the local clock must be
 * within a small part of `grace` of it.
 */
import type { Digest } from '../digest.js';
import { VmdnError } from '../../errors.js';
import type { ImageRecord } from '../types.js';
import { CONDEMNED, PACKS, indexKey, packKey, type PackInfo } from './pack-index.js';
import { REFS, decodeRefs } from './s3-names.js';
import type { S3Store } from './s3-store.js';

export interface S3GcResult {
  images: number;
  liveObjects: number;
  packs: number;
  condemnedPacks: number;
  repackedPacks: number;
  rescuedPacks: number;
  deletedPacks: number;
  freedBytes: number;
}

/** Every name with the objects it needs (its refs object). */
export async function liveRefs(store: S3Store): Promise<{ images: ImageRecord[]; refs: Map<Digest, Digest[]> }> {
  const images = await store.names.list();
  const refs = new Map<Digest, Digest[]>();
  for (const img of images) {
    if (refs.has(img.manifest)) continue;
    const r = await store.s3.get(`${REFS}${img.manifest}`);
    if (!r) throw new VmdnError('E_STORE', `image ${img.name}:${img.tag}: its references (${REFS}${img.manifest.slice(0, 12)}...) are missing; gc stops rather than guess`, { manifest: img.manifest });
    refs.set(img.manifest, decodeRefs(r.body, img.manifest));
  }
  return { images, refs };
}

export async function collectS3Garbage(store: S3Store, opts: { graceMs: number; dryRun?: boolean; now?: number }): Promise<S3GcResult> {
  const grace = opts.graceMs;
  await store.flush();
  await store.index.refresh();
  const { images, refs } = await liveRefs(store);
  const live = new Set<Digest>();
  for (const l of refs.values()) for (const d of l) live.add(d);
  const condemnedAt = new Map<string, number>();
  for await (const o of store.s3.list(CONDEMNED)) condemnedAt.set(o.key.slice(CONDEMNED.length), o.modified.getTime());
  const now = opts.now ?? Date.now();
  const res: S3GcResult = { images: images.length, liveObjects: live.size, packs: store.index.packs.size, condemnedPacks: 0, repackedPacks: 0, rescuedPacks: 0, deletedPacks: 0, freedBytes: 0 };

  // which packs hold each live object, condemned ones left out
  const holders = new Map<Digest, Set<string>>();
  for (const p of store.index.packs.values()) {
    if (condemnedAt.has(p.id)) continue;
    for (const e of p.entries) if (live.has(e.digest)) (holders.get(e.digest) ?? holders.set(e.digest, new Set()).get(e.digest)!).add(p.id);
  }
  const onlyHere = (p: PackInfo) => p.entries.filter((e) => live.has(e.digest) && ![...(holders.get(e.digest) ?? [])].some((h) => h !== p.id));

  for (const p of [...store.index.packs.values()]) {
    let at = condemnedAt.get(p.id);
    if (at === undefined) {
      if (now - p.modified.getTime() < grace) continue; // maybe an import still running: not named yet
      const liveHere = p.entries.filter((e) => live.has(e.digest));
      const liveBytes = liveHere.reduce((n, e) => n + e.stored, 0);
      if (liveHere.length && liveBytes * 2 > p.size) continue; // mostly live: keep
      if (opts.dryRun) { res.condemnedPacks++; res.freedBytes += p.size - liveBytes; continue; }
      if (liveHere.length) {
        // copy the live part out first: after this, no object is needed from this pack alone
        for (const e of liveHere) await store.repack(e.digest);
        await store.flush();
        for (const e of liveHere) holders.get(e.digest)!.add('(repacked)');
        res.repackedPacks++;
      }
      await store.s3.putIf(`${CONDEMNED}${p.id}`, Buffer.from(JSON.stringify({ v: 1, at: new Date(now).toISOString() })), { create: true });
      res.condemnedPacks++;
      at = now;
    }
    if (onlyHere(p).length) {
      // a name written since needs it: take the sentence back
      if (!opts.dryRun) await store.s3.delete(`${CONDEMNED}${p.id}`);
      res.rescuedPacks++;
      continue;
    }
    if (now - at < grace || opts.dryRun) continue;
    await store.s3.delete(indexKey(p.id));
    await store.s3.delete(packKey(p.id));
    await store.s3.delete(`${CONDEMNED}${p.id}`);
    store.index.forget(p.id);
    res.deletedPacks++;
    res.freedBytes += p.size;
  }
  // a run that died between its deletes left the record (or the pack) behind
  for (const id of condemnedAt.keys()) {
    if (store.index.packs.has(id) || opts.dryRun) continue;
    if (await store.s3.head(indexKey(id))) continue;
    await store.s3.delete(packKey(id));
    await store.s3.delete(`${CONDEMNED}${id}`);
  }
  // packs whose index never came (a writer died between the two PUTs)
  for await (const o of store.s3.list(PACKS)) {
    const m = /^packs\/([0-9a-f]{64})\.pack$/.exec(o.key);
    if (m && !store.index.packs.has(m[1]!) && now - o.modified.getTime() >= grace && !opts.dryRun) {
      if (await store.s3.head(indexKey(m[1]!))) continue;
      await store.s3.delete(o.key);
      res.freedBytes += o.size;
    }
  }
  return res;
}

/** What `vmdn images` shows per image: stored bytes of the objects it needs, and of those no other image needs. */
export async function imageUsage(store: S3Store): Promise<Map<Digest, { stored: number; unique: number }>> {
  const { refs } = await liveRefs(store);
  const users = new Map<Digest, number>();
  for (const l of refs.values()) for (const d of new Set(l)) users.set(d, (users.get(d) ?? 0) + 1);
  const out = new Map<Digest, { stored: number; unique: number }>();
  for (const [m, l] of refs) {
    let stored = 0;
    let unique = 0;
    for (const d of new Set(l)) {
      const s = store.index.objects.get(d)?.stored ?? 0;
      stored += s;
      if (users.get(d) === 1) unique += s;
    }
    out.set(m, { stored, unique });
  }
  return out;
}
