/**
 * Which held objects a new object most likely resembles, from the images'
 * structure: an image is a set of sequences (its disk chunks; per filesystem
 * the tree, times and small-file stream; per file its content chunks), and a
 * run of new objects in a sequence usually replaces the run between the same
 * two neighbours in a held image's sequence of the same name (a tree chunk with
 * a line inserted, a stream chunk with a file added, dpkg's status grown by a
 * stanza). Those held objects become the pack's dictionary (pack.ts).
 */
import type { Digest } from '../../store/digest.js';
import type { Manifest } from '../../model/manifest.js';
import type { TreeRecord } from '../../model/files-tree.js';
import { pathKey } from '../../model/files-tree.js';
import { MAX_BATCH } from './batch.js';
import { MAX_PACK_BYTES, MAX_PACK_REF_BYTES, MAX_PACK_REFS } from './pack.js';

/** An image as sequences of digests, by name ("disk", "tree:1", "file:1:etc/passwd", ...). */
export type Sequences = Map<string, Digest[]>;

/** `trees[i]` holds the records of `m.filesystems[i]` when loaded (tree-less: only the manifest's own sequences). */
export function sequences(m: Manifest, trees: Array<TreeRecord[] | undefined> = []): Sequences {
  const s: Sequences = new Map([['disk', m.chunks.map((c) => c[2])]]);
  (m.filesystems ?? []).forEach((f, i) => {
    s.set(`tree:${f.index}`, f.tree);
    s.set(`times:${f.index}`, f.times);
    s.set(`stream:${f.index}`, f.stream.map((c) => c[2]));
    for (const r of trees[i] ?? []) if (r.chunks?.length) s.set(`file:${f.index}:${pathKey(r.path)}`, r.chunks.map((c) => c[2]));
  });
  return s;
}

/**
 * For every wanted digest of the target's sequences, the held digests of the
 * same-named sequences around the same place. A run with no held neighbour
 * (a file whose every chunk changed) takes the start of the held sequences.
 */
export function nominate(target: Sequences, held: Sequences[], wanted: ReadonlySet<Digest>): Map<Digest, Digest[]> {
  const out = new Map<Digest, Digest[]>();
  for (const [name, seq] of target) {
    const hs = held.map((h) => h.get(name)).filter((x): x is Digest[] => !!x?.length);
    if (!hs.length) continue;
    const where = new Map<Digest, [number, number]>();
    hs.forEach((h, k) => h.forEach((d, j) => where.has(d) || where.set(d, [k, j])));
    for (let a = 0; a < seq.length; ) {
      if (!wanted.has(seq[a]!)) {
        a++;
        continue;
      }
      let b = a;
      while (b < seq.length && wanted.has(seq[b]!)) b++;
      const span = b - a + 1;
      const refs: Digest[] = [];
      const before = a > 0 ? where.get(seq[a - 1]!) : undefined;
      const after = b < seq.length ? where.get(seq[b]!) : undefined;
      if (before) refs.push(...hs[before[0]]!.slice(before[1] + 1, before[1] + 1 + span));
      if (after) refs.push(...hs[after[0]]!.slice(Math.max(0, after[1] - span), after[1]));
      if (!before && !after) for (const h of hs) refs.push(...h.slice(0, span));
      const unique = [...new Set(refs)];
      for (let i = a; i < b; i++) if (!out.has(seq[i]!)) out.set(seq[i]!, unique);
      a = b;
    }
  }
  return out;
}

export interface PackPlan {
  digests: Digest[];
  refs: Digest[];
}

/**
 * Cut `order` into packs within the server's limits, each with the union of
 * its objects' references (held ones only, each once, within the dictionary
 * limit). `size` estimates raw bytes (undefined: unknown, counted as 64 KiB).
 */
export function planPacks(order: Digest[], refsOf: ReadonlyMap<Digest, Digest[]>, isHeld: (d: Digest) => boolean, size: (d: Digest) => number | undefined): PackPlan[] {
  const est = (d: Digest) => size(d) ?? 64 << 10;
  const plans: PackPlan[] = [];
  let cur: PackPlan = { digests: [], refs: [] };
  let bytes = 0;
  let refBytes = 0;
  let refSet = new Set<Digest>();
  // a run's objects share one reference list: go through it once per pack, not once per object
  let seen = new Set<Digest[]>();
  const close = () => {
    if (cur.digests.length) plans.push(cur);
    cur = { digests: [], refs: [] };
    bytes = 0;
    refBytes = 0;
    refSet = new Set();
    seen = new Set();
  };
  for (const d of order) {
    const n = est(d);
    if (cur.digests.length && (cur.digests.length >= MAX_BATCH || bytes + n > MAX_PACK_BYTES)) close();
    cur.digests.push(d);
    bytes += n;
    const list = refsOf.get(d);
    if (!list || seen.has(list)) continue;
    seen.add(list);
    for (const r of list) {
      if (refSet.has(r) || !isHeld(r) || cur.refs.length >= MAX_PACK_REFS) continue;
      const rn = est(r);
      // a dictionary larger than what it helps to compress costs both ends more than it saves
      if (refBytes + rn > Math.min(MAX_PACK_REF_BYTES, bytes + (1 << 20))) continue;
      refSet.add(r);
      cur.refs.push(r);
      refBytes += rn;
    }
  }
  close();
  return plans;
}
