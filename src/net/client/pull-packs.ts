/**
 * The pull's delta path: what the cache lacks is asked for in packs (pack.ts)
 * compressed against the cache's own images, in three steps because each
 * needs the one before: the manifest (against the held manifests), the
 * filesystems' trees and times (against the held trees, place by place), then
 * everything else (against the held objects around the same place: the same
 * file's chunks, the neighbouring stream and disk chunks). Whatever a pack
 * did not bring is left for the ordinary batches and GETs.
 */
import type { Digest } from '../../store/digest.js';
import { presentIn, type ImageStore } from '../../store/types.js';
import { decodeManifest, type Manifest } from '../../model/manifest.js';
import { loadTree } from '../../model/objects.js';
import type { TreeRecord } from '../../model/files-tree.js';
import type { HttpStore } from './http-store.js';
import { fetchPack } from './pack-client.js';
import { VmdnError } from '../../errors.js';
import { nominate, planPacks, sequences, type PackPlan, type Sequences } from '../wire/delta-refs.js';

const PACK_LANES = 2;
/** Held images whose manifests are read as candidates, and how many of them serve as references. */
const CANDIDATES = 32;
const REFERENCE_IMAGES = 4;

export interface PackStats {
  packs: number;
  objects: number;
  bytes: number;
  /** Packs that failed verification: their objects came another way. */
  rejected: number;
}

export class PackPuller {
  readonly stats: PackStats = { packs: 0, objects: 0, bytes: 0, rejected: 0 };
  private heldManifests: Array<{ digest: Digest; manifest: Manifest }> | undefined;
  private off = false;

  /** `name`: the image's name (its other tags are the likeliest references). */
  constructor(private readonly remote: HttpStore, private readonly cache: ImageStore, private readonly name: string, private readonly signal?: AbortSignal) {}

  /**
   * Candidate images the cache holds, other than `except` (read once): the
   * target's own name first (its earlier tags), then the newest, at most
   * CANDIDATES, so a cache of thousands of images costs no more than a few.
   */
  private async held(except: Digest): Promise<Array<{ digest: Digest; manifest: Manifest }>> {
    if (!this.heldManifests) {
      this.heldManifests = [];
      const rows = (await this.cache.names.list()).filter((r) => r.manifest !== except);
      rows.sort((a, b) => Number(b.name === this.name) - Number(a.name === this.name) || b.created.localeCompare(a.created));
      const seen = new Set<Digest>();
      for (const img of rows) {
        if (this.heldManifests.length >= CANDIDATES) break;
        if (seen.has(img.manifest) || !(await this.cache.has(img.manifest))) continue;
        seen.add(img.manifest);
        try {
          this.heldManifests.push({ digest: img.manifest, manifest: decodeManifest(await this.cache.get(img.manifest, { signal: this.signal })) });
        } catch {
          // a damaged local image only costs its help here; verify/gc deal with it
        }
      }
    }
    return this.heldManifests;
  }

  /** The held images sharing most of the target manifest's own objects (their trees are read next), at most REFERENCE_IMAGES. */
  private async closest(m: Manifest, self: Digest): Promise<Array<{ digest: Digest; manifest: Manifest }>> {
    const own = new Set([...sequences(m).values()].flat());
    const score = (h: Manifest) => {
      let n = 0;
      for (const seq of sequences(h).values()) for (const d of seq) if (own.has(d)) n++;
      return n;
    };
    const ranked = (await this.held(self)).map((h) => ({ h, n: score(h.manifest) }));
    ranked.sort((a, b) => b.n - a.n);
    return ranked.slice(0, REFERENCE_IMAGES).map((x) => x.h);
  }

  /**
   * Step 1: the manifest into the cache, against the held ones. A cache that
   * holds no other image turns packs off: with nothing to compress against
   * they save a few percent for a lot of CPU at both ends (a first pull).
   */
  async manifest(digest: Digest): Promise<void> {
    const held = await this.held(digest);
    if (!held.length) this.off = true;
    if (this.off || (await this.cache.has(digest))) return;
    await this.run([{ digests: [digest], refs: held.slice(0, REFERENCE_IMAGES).map((h) => h.digest) }]);
  }

  /** Step 2: the trees and times a files manifest names. */
  async trees(m: Manifest, self: Digest): Promise<void> {
    const names = (m.filesystems ?? []).flatMap((f) => [...f.tree, ...f.times]);
    const have = await presentIn(this.cache, names);
    const missing = names.filter((d) => !have.has(d));
    if (!missing.length || this.off) return;
    const held = (await this.closest(m, self)).map((h) => sequences(h.manifest));
    const target = sequences(m);
    await this.run(await this.plan(missing, target, held));
  }

  /** Step 3: the rest of `missing` (emptied of what arrived); `trees`: the target's records, already read. */
  async objects(m: Manifest, self: Digest, missing: Set<Digest>, trees: Array<TreeRecord[] | undefined>): Promise<void> {
    if (!missing.size || this.off) return;
    const treesOf = async (x: Manifest) => {
      const out: Array<TreeRecord[] | undefined> = [];
      for (const f of x.filesystems ?? []) out.push(await loadTree(f, this.cache, this.signal).catch(() => undefined));
      return out;
    };
    const held: Sequences[] = [];
    for (const h of await this.closest(m, self)) held.push(sequences(h.manifest, await treesOf(h.manifest)));
    const target = sequences(m, trees);
    // sequence order keeps neighbours (and so their shared bytes) in one pack
    const order: Digest[] = [];
    const placed = new Set<Digest>();
    for (const seq of target.values()) for (const d of seq) if (missing.has(d) && !placed.has(d)) placed.add(d), order.push(d);
    for (const d of missing) if (!placed.has(d)) order.push(d);
    await this.run(await this.plan(order, target, held, sizes(m, trees)));
    for (const d of await presentIn(this.cache, missing)) missing.delete(d);
  }

  private async plan(order: Digest[], target: Sequences, held: Sequences[], size: Map<Digest, number> = new Map()): Promise<PackPlan[]> {
    const refs = nominate(target, held, new Set(order));
    // one query for every candidate, not one lookup per use
    const candidates = new Set<Digest>();
    for (const list of new Set(refs.values())) for (const r of list) candidates.add(r);
    const present = await this.cache.statMany(candidates);
    return planPacks(order, refs, (d) => present.has(d), (d) => size.get(d) ?? present.get(d)?.size);
  }

  private async run(plans: PackPlan[]): Promise<void> {
    let next = 0;
    const lane = async () => {
      while (next < plans.length && !this.off) {
        this.signal?.throwIfAborted();
        const p = plans[next++]!;
        let reply;
        try {
          reply = await fetchPack(this.remote, p.digests, p.refs, (d) => this.cache.get(d, { signal: this.signal }), this.signal);
        } catch (err) {
          // a pack that does not decode or verify: its objects are left for batches and GETs
          if (!(err instanceof VmdnError) || err.code !== 'E_CORRUPT_OBJECT') throw err;
          this.stats.rejected++;
          continue;
        }
        if (!reply) {
          this.off = true;
          return;
        }
        this.stats.packs++;
        this.stats.bytes += reply.bytes;
        this.stats.objects += reply.objects.length;
        // verified by decodePack: stored under the digest it hashed to
        await Promise.all(reply.objects.map((o) => this.cache.put(o.data, { digest: o.digest, signal: this.signal })));
      }
    };
    await Promise.all(Array.from({ length: Math.min(PACK_LANES, plans.length) }, lane));
  }
}

/** Raw sizes the manifest and trees state (disk and stream chunks, file chunks). */
function sizes(m: Manifest, trees: Array<TreeRecord[] | undefined>): Map<Digest, number> {
  const out = new Map<Digest, number>();
  for (const c of m.chunks) out.set(c[2], c[1]);
  for (const f of m.filesystems ?? []) for (const c of f.stream) out.set(c[2], c[1]);
  for (const t of trees) for (const r of t ?? []) for (const c of r.chunks ?? []) out.set(c[2], c[1]);
  return out;
}
