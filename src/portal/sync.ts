/**
 * Brings the catalog up to date with the store's names: a revision named since
 * the last look (import, push, a portal upload) is indexed, one removed is
 * dropped. Run before catalog answers (at most one run at a time, and not more
 * often than every SYNC_MS unless something here changed the names), so an
 * existing store is indexed lazily on the first request.
 */
import type { ImageStore } from '../store/types.js';
import { loadManifest } from '../images/names.js';
import type { CatalogDb } from './catalog-db.js';
import { openStored, strategyName, treeFacts, treeKey } from './stored.js';

const SYNC_MS = 2000;

export class CatalogSync {
  private running: Promise<void> | undefined;
  private last = 0;

  constructor(private readonly cat: CatalogDb, private readonly store: ImageStore) {}

  /** Forget the throttle: the next `fresh` looks at the names again. */
  invalidate(): void {
    this.last = 0;
  }

  async fresh(): Promise<void> {
    while (this.running) await this.running;
    if (Date.now() - this.last < SYNC_MS) return;
    this.running = this.run().finally(() => {
      this.running = undefined;
      this.last = Date.now();
    });
    await this.running;
  }

  private async run(): Promise<void> {
    const db = this.cat.db;
    const records = await this.store.names.list();
    const have = new Map((db.prepare('SELECT i.name, r.tag, r.manifest, i.id FROM revisions r JOIN images i ON i.id = r.image').all() as Array<{ name: string; tag: string; manifest: string; id: number }>)
      .map((r) => [`${r.name}:${r.tag}`, r]));
    const touched = new Set<number>();
    for (const rec of records) {
      const key = `${rec.name}:${rec.tag}`;
      const old = have.get(key);
      have.delete(key);
      if (old?.manifest === rec.manifest) continue;
      const manifest = await loadManifest(this.store, rec.manifest);
      const tk = treeKey(rec.manifest, manifest);
      let tree: number | null | undefined = this.cat.treeId(tk);
      if (tree === undefined) {
        const disk = await openStored(this.store, manifest);
        try {
          const facts = await treeFacts(disk);
          // the image's newest revision so far is the likeliest base: most of its files are still there
          const prev = this.cat.image(rec.name)?.tree ?? undefined;
          tree = this.cat.addTree(tk, facts, this.cat.baseCandidates(facts, prev));
        } catch (err) {
          // one unreadable image must not take the catalog down: listed, but not searchable inside
          console.error(`vmdn portal: cannot index ${key}: ${(err as Error).message}`);
          tree = null;
        } finally {
          await disk.close();
        }
      }
      const img = this.cat.ensureImage(rec.name, true);
      db.prepare(`INSERT INTO revisions(image, tag, manifest, created, virtual_size, data_size, strategy, tree) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(image, tag) DO UPDATE SET manifest = excluded.manifest, created = excluded.created, virtual_size = excluded.virtual_size,
        data_size = excluded.data_size, strategy = excluded.strategy, tree = excluded.tree`)
        .run(img.id, rec.tag, rec.manifest, rec.created, rec.virtualSize, rec.dataSize, strategyName(manifest), tree);
      touched.add(img.id);
    }
    for (const gone of have.values()) {
      db.prepare('DELETE FROM revisions WHERE image = ? AND tag = ?').run(gone.id, gone.tag);
      touched.add(gone.id);
    }
    for (const id of touched) this.cat.refresh(id);
  }
}
