/**
 * Which pack holds each object, loaded from the packs' index objects and
 * refreshed when an object is asked for that another process may have
 * written since (a LIST of the new indexes only; at most one at a time).
 * Packs gc has condemned (gc.ts) are known but not used for dedup.
 */
import type { Digest } from '../digest.js';
import type { S3 } from './client.js';
import { decodePackIndex, type PackEntry } from './pack-format.js';

export const PACKS = 'packs/';
export const CONDEMNED = 'gc/condemned/';
export interface Located extends PackEntry { pack: string }
export interface PackInfo { id: string; entries: PackEntry[]; size: number; modified: Date }

const PACK_ID = /^[0-9a-f]{64}$/;
export const packKey = (id: string) => `${PACKS}${id}.pack`;
export const indexKey = (id: string) => `${PACKS}${id}.idx`;

export class PackIndex {
  readonly objects = new Map<Digest, Located>();
  readonly packs = new Map<string, PackInfo>();
  condemned = new Set<string>();
  private refreshing?: Promise<void>;
  private lastRefresh = 0;
  /** LISTs begun, and the number of the newest one finished (refreshAfterNow). */
  private listsStarted = 0;
  private listsDone = 0;
  private readonly written = new Map<string, number>();

  constructor(private readonly s3: S3) {}

  /** Where `d` is, unless only in a condemned pack (then it counts as absent for writers). */
  live(d: Digest): Located | undefined {
    const l = this.objects.get(d);
    return l && !this.condemned.has(l.pack) ? l : undefined;
  }

  /** `mine`: this process just wrote it (a LIST that began earlier may not show it yet). */
  add(id: string, entries: PackEntry[], size: number, modified: Date, mine = false): void {
    if (mine) this.written.set(id, Date.now());
    this.packs.set(id, { id, entries, size, modified });
    for (const e of entries) {
      const had = this.objects.get(e.digest);
      // prefer a copy outside condemned packs (a writer re-packs objects of condemned packs)
      if (!had || this.condemned.has(had.pack)) this.objects.set(e.digest, { ...e, pack: id });
    }
  }

  /** Load indexes not seen yet; `minAgeMs`: skip when the last refresh is younger (a burst of misses makes one LIST). */
  refresh(minAgeMs = 0): Promise<void> {
    if (this.refreshing) return this.refreshing;
    if (Date.now() - this.lastRefresh < minAgeMs) return Promise.resolve();
    const n = ++this.listsStarted;
    this.refreshing = this.load().finally(() => {
      this.refreshing = undefined;
      this.lastRefresh = Date.now();
      this.listsDone = Math.max(this.listsDone, n);
    });
    return this.refreshing;
  }

  /**
   * Load indexes with a LIST that began after this call: an object another
   * origin on the bucket packed a moment ago (a name now points at it) is
   * found. A LIST already running may predate that pack, so it is waited out
   * and one more made. Misses that arrive meanwhile share it: one LIST at a
   * time, however many misses (a throttle by age answered 404 for up to 2 s
   * after a push through another origin of a group).
   */
  async refreshAfterNow(): Promise<void> {
    const need = this.listsStarted + 1;
    while (this.listsDone < need) await (this.refreshing ?? this.refresh());
  }

  private async load(): Promise<void> {
    const condemned = new Set<string>();
    for await (const o of this.s3.list(CONDEMNED)) condemned.add(o.key.slice(CONDEMNED.length));
    this.condemned = condemned;
    const todo: { id: string; modified: Date }[] = [];
    const listed = new Set<string>();
    const started = Date.now();
    for await (const o of this.s3.list(PACKS)) {
      const m = /^packs\/([0-9a-f]{64})\.idx$/.exec(o.key);
      if (m && PACK_ID.test(m[1]!)) listed.add(m[1]!);
      if (m && PACK_ID.test(m[1]!) && !this.packs.has(m[1]!)) todo.push({ id: m[1]!, modified: o.modified });
    }
    // packs another process's gc deleted; not one this process wrote while the LIST ran
    const gone = [...this.packs.values()].filter((p) => !listed.has(p.id) && !((this.written.get(p.id) ?? 0) >= started));
    for (const p of gone) this.packs.delete(p.id);
    const one = async (t: { id: string; modified: Date }) => {
      const r = await this.s3.get(indexKey(t.id));
      if (!r) return; // deleted by gc since the LIST
      const { entries, packSize } = decodePackIndex(r.body, t.id);
      this.add(t.id, entries, packSize, t.modified);
    };
    for (let i = 0; i < todo.length; i += 16) await Promise.all(todo.slice(i, i + 16).map(one));
    if (gone.length) {
      // objects of deleted packs are gone, unless another pack holds them (gc copied them out)
      this.objects.clear();
      for (const p of [...this.packs.values()]) this.add(p.id, p.entries, p.size, p.modified);
    }
  }

  forget(id: string): void {
    const p = this.packs.get(id);
    this.packs.delete(id);
    for (const e of p?.entries ?? []) if (this.objects.get(e.digest)?.pack === id) this.objects.delete(e.digest);
  }
}
