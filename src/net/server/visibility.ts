/**
 * Private images (issue 16): which names are private, and so what a principal
 * may see. A name is private when it was pushed with `--private` (kept in the
 * store's side record `access/private`, every tag of the name) or matches a
 * prefix the origin was started with (`vmdn serve --private-prefix team/`).
 *
 * A private image is absent (404, never 403: existence does not leak) for a
 * principal without read scope on its name: from the list, its name, its
 * boot profile, and every object that no image it may see needs. An object
 * that a public image needs stays public however many private images share
 * it. The answer per object comes from the store index (namesUsing): exact,
 * one query; with no private image at all the origin skips it entirely.
 */
import type { Digest } from '../../store/digest.js';
import type { ImageRecord, ImageStore, SideRecords } from '../../store/types.js';
import { canRead, type Principal } from './auth.js';
import { LIST_TTL_MS, RECORD_KIND } from './tokens.js';

const PRIVATE_KEY = 'private';
/** Objects whose names are remembered (a few MB). */
const MAX_USED_BY = 200_000;

/** What a principal may do with an object: 'public' (anyone), 'private' (this principal only), or hidden (absent). */
export type ObjectAccess = 'public' | 'private';

/** An index that can say which names need an object (the local store's SQLite index). */
export interface NamesUsing {
  namesUsing(digest: Digest): string[];
  /** See StoreIndex.dataVersion: another process committed. */
  dataVersion(): number;
}

export class Visibility {
  private names: { at: number; set: Set<string> } | undefined;
  private any: { at: number; yes: boolean } | undefined;
  private version: number | undefined;
  /**
   * namesUsing answers (one index query, ~15 us) reused while the images and
   * private names stay as they were: `shape` is their signature, checked with
   * `any` every LIST_TTL_MS and at once after a change made here.
   */
  private readonly usedBy = new Map<Digest, string[]>();
  private shape = '';
  /**
   * hiddenNames per principal (keyed by its scopes), valid as long as `any`:
   * the portal asks on every request, and listing every name each time grew
   * with the catalog.
   */
  private readonly hidden = new Map<string, string[]>();

  constructor(
    private readonly store: ImageStore & { index?: Partial<NamesUsing> },
    private readonly records: SideRecords | undefined,
    private readonly prefixes: readonly string[] = [],
  ) {}

  /**
   * Another `vmdn serve` on this store (an origin group, docs/http-api.md)
   * committed: forget what was remembered. A name pushed private through it
   * had its private record written before its name was committed, so the
   * re-read sees it before this process can serve the name (not LIST_TTL_MS
   * later, when it would have been public here meanwhile).
   */
  private fresh(): void {
    const v = this.store.index?.dataVersion?.();
    if (v === undefined || v === this.version) return;
    this.version = v;
    this.names = undefined;
    this.any = undefined;
    this.usedBy.clear();
    this.hidden.clear();
  }

  private async privateNames(): Promise<Set<string>> {
    this.fresh();
    if (this.names && Date.now() - this.names.at < LIST_TTL_MS) return this.names.set;
    const raw = await this.records?.getRecord(RECORD_KIND, PRIVATE_KEY);
    const arr = raw ? (JSON.parse(Buffer.from(raw).toString('utf8')) as { names?: unknown }).names : [];
    this.names = { at: Date.now(), set: new Set(Array.isArray(arr) ? arr.filter((n): n is string => typeof n === 'string') : []) };
    return this.names.set;
  }

  async isPrivate(name: string): Promise<boolean> {
    return this.prefixes.some((p) => name.startsWith(p)) || (await this.privateNames()).has(name);
  }

  /** Mark a name private (true) or public (false); undefined leaves it as it is (a re-push does not publish a private name). */
  /** Names changed here (an upload named an image): answer from the new state at once. */
  changed(): void {
    this.any = undefined;
    this.usedBy.clear();
    this.hidden.clear();
  }

  async setPrivate(name: string, flag: boolean | undefined): Promise<void> {
    if (flag === undefined) return;
    this.names = undefined;
    const set = new Set(await this.privateNames());
    if (flag === set.has(name)) return;
    if (flag) set.add(name);
    else set.delete(name);
    if (!this.records) throw new Error('this store keeps no side records: private images need a local store');
    await this.records.putRecord(RECORD_KIND, PRIVATE_KEY, Buffer.from(JSON.stringify({ names: [...set].sort() })));
    this.names = undefined;
    this.changed();
  }

  async canSee(p: Principal, name: string): Promise<boolean> {
    return !(await this.isPrivate(name)) || canRead(p, name);
  }

  /** Is any named image private? Without one, every answer is the same for everyone. */
  async anyPrivate(): Promise<boolean> {
    this.fresh();
    if (this.any && Date.now() - this.any.at < LIST_TTL_MS) return this.any.yes;
    let yes = false;
    this.hidden.clear();
    if (this.prefixes.length || (await this.privateNames()).size) {
      const list = await this.store.names.list();
      for (const r of list) if (await this.isPrivate(r.name)) { yes = true; break; }
      const shape = `${list.map((r) => `${r.name}:${r.tag}=${r.manifest}`).join(',')}|${[...(await this.privateNames())].join(',')}`;
      if (shape !== this.shape) this.usedBy.clear();
      this.shape = shape;
    }
    this.any = { at: Date.now(), yes };
    return yes;
  }

  /** The private names `p` has no read scope on (the portal's catalog leaves them out). */
  async hiddenNames(p: Principal): Promise<string[]> {
    if (!(await this.anyPrivate())) return [];
    const key = p.admin ? 'admin' : JSON.stringify([p.read, p.write]);
    const known = this.hidden.get(key);
    if (known) return known;
    const out = new Set<string>();
    for (const r of await this.store.names.list()) if (!(await this.canSee(p, r.name))) out.add(r.name);
    const list = [...out];
    // bounded by the number of distinct token scopes seen within one LIST_TTL_MS
    if (this.hidden.size >= 1000) this.hidden.clear();
    this.hidden.set(key, list);
    return list;
  }

  async visibleImages(p: Principal): Promise<ImageRecord[]> {
    const out: ImageRecord[] = [];
    for (const r of await this.store.names.list()) if (await this.canSee(p, r.name)) out.push(r);
    return out;
  }

  /** Each of `digests` that `p` may fetch, with whether anyone may; the others are to be answered as absent. */
  async objects(p: Principal, digests: Iterable<Digest>): Promise<Map<Digest, ObjectAccess>> {
    const out = new Map<Digest, ObjectAccess>();
    if (!(await this.anyPrivate())) {
      for (const d of digests) out.set(d, 'public');
      return out;
    }
    const index = this.store.index;
    for (const d of digests) {
      // a store that cannot say who needs an object serves private stores to their readers only
      let names = this.usedBy.get(d);
      if (!names && typeof index?.namesUsing === 'function') {
        names = index.namesUsing(d);
        if (this.usedBy.size >= MAX_USED_BY) this.usedBy.clear();
        this.usedBy.set(d, names);
      }
      let access: ObjectAccess | undefined;
      if (names?.length) {
        for (const n of names) {
          if (!(await this.isPrivate(n))) { access = 'public'; break; }
          if (canRead(p, n)) access = 'private';
        }
      } else if (p.admin || p.read.length || p.write.length) {
        // named by no image (a push under way, or garbage): for those with some scope only
        access = 'private';
      }
      if (access) out.set(d, access);
    }
    return out;
  }
}
