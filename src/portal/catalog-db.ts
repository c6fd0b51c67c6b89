/**
 * The portal's catalog: one SQLite file beside the store (portal.db) with each
 * image's metadata, its revisions, download counts and the search index. It is
 * derived data except for the metadata and counts: the store's names stay the
 * truth about which revisions exist (sync.ts brings the catalog up to date).
 *
 * Packages and paths are indexed per distinct *tree* (the filesystems' tree
 * objects of a files image, else the manifest): images that share a tree share
 * its rows, and path strings are stored once (paths) and referenced by id.
 * A tree much like one already indexed (the image's previous revision, or a
 * system of the same OS release) is kept as that *base* plus its differences:
 * tree_paths rows with present = 1 are paths it adds, present = 0 paths of the
 * base it lacks (bases are always full trees: one level, so a search stays two
 * index look-ups). 10,000 images of a few hundred distinct systems, each with
 * its own files on top, stay small: the bench's generated catalog measures it.
 */
import Database from 'better-sqlite3';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS images(
  id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,
  meta TEXT NOT NULL DEFAULT '{}', title TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '',
  published INTEGER NOT NULL DEFAULT 1,
  latest_tag TEXT, latest_created TEXT NOT NULL DEFAULT '', tree INTEGER, base INTEGER, revisions INTEGER NOT NULL DEFAULT 0,
  downloads INTEGER NOT NULL DEFAULT 0, virtual_size INTEGER NOT NULL DEFAULT 0);
-- covering indexes of what a search filters and sorts on (catalog-search.ts): the count and the page
-- read these small rows, not the images' metadata (3x less CPU over 10,000 images, bench/portal.ts)
CREATE INDEX IF NOT EXISTS images_newest ON images(published, latest_created, tree, base, downloads) WHERE latest_tag IS NOT NULL;
CREATE INDEX IF NOT EXISTS images_popular ON images(published, downloads, latest_created, tree, base) WHERE latest_tag IS NOT NULL;
CREATE INDEX IF NOT EXISTS images_tree ON images(tree);
CREATE INDEX IF NOT EXISTS images_base ON images(base);
CREATE TABLE IF NOT EXISTS revisions(
  image INTEGER NOT NULL, tag TEXT NOT NULL, manifest TEXT NOT NULL, created TEXT NOT NULL,
  virtual_size INTEGER NOT NULL, data_size INTEGER NOT NULL, strategy TEXT NOT NULL, tree INTEGER,
  downloads INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(image, tag)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trees(id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, base INTEGER,
  os TEXT NOT NULL DEFAULT '', release TEXT NOT NULL DEFAULT '', codename TEXT NOT NULL DEFAULT '', pretty TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS trees_os ON trees(os, release);
CREATE INDEX IF NOT EXISTS trees_base ON trees(base);
CREATE TABLE IF NOT EXISTS pkgs(id INTEGER PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, arch TEXT NOT NULL, UNIQUE(name, version, arch));
CREATE TABLE IF NOT EXISTS tree_pkgs(pkg INTEGER NOT NULL, tree INTEGER NOT NULL, PRIMARY KEY(pkg, tree)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tree_pkgs_tree ON tree_pkgs(tree);
CREATE TABLE IF NOT EXISTS paths(id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL);
CREATE TABLE IF NOT EXISTS tree_paths(path INTEGER NOT NULL, tree INTEGER NOT NULL, present INTEGER NOT NULL, PRIMARY KEY(path, tree)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tree_paths_tree ON tree_paths(tree);
CREATE VIRTUAL TABLE IF NOT EXISTS images_fts USING fts5(name, title, description, authors, os, release, tokenize='unicode61');
`;

export interface Metadata {
  title: string;
  description: string;
  authors: string[];
  citation: string;
  doi: string;
  license: string;
  links: Array<{ label: string; url: string }>;
}

export const EMPTY_META: Metadata = { title: '', description: '', authors: [], citation: '', doi: '', license: '', links: [] };

export interface ImageRow {
  id: number;
  name: string;
  meta: string;
  published: number;
  latest_tag: string | null;
  latest_created: string;
  tree: number | null;
  revisions: number;
  downloads: number;
  virtual_size: number;
}

export interface RevisionRow {
  tag: string;
  manifest: string;
  created: string;
  virtual_size: number;
  data_size: number;
  strategy: string;
  tree: number | null;
  downloads: number;
}

export interface TreeFacts {
  os: string;
  release: string;
  codename: string;
  pretty: string;
  packages: Array<{ name: string; version: string; arch: string }>;
  paths: string[];
}

export class CatalogDb {
  readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file, { timeout: 5000 });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
  }

  close(): void {
    this.db.close();
  }

  image(name: string): ImageRow | undefined {
    return this.db.prepare('SELECT * FROM images WHERE name = ?').get(name) as ImageRow | undefined;
  }

  revisions(imageId: number): RevisionRow[] {
    return this.db.prepare('SELECT * FROM revisions WHERE image = ? ORDER BY created DESC, tag DESC').all(imageId) as RevisionRow[];
  }

  /** A name first seen: portal uploads create it unpublished before the store names it; other names are public. */
  ensureImage(name: string, published: boolean): ImageRow {
    this.db.prepare('INSERT OR IGNORE INTO images(name, published) VALUES (?, ?)').run(name, published ? 1 : 0);
    return this.image(name)!;
  }

  treeId(key: string): number | undefined {
    return (this.db.prepare('SELECT id FROM trees WHERE key = ?').get(key) as { id: number } | undefined)?.id;
  }

  tree(id: number): { os: string; release: string; codename: string; pretty: string } | undefined {
    return this.db.prepare('SELECT os, release, codename, pretty FROM trees WHERE id = ?').get(id) as never;
  }

  /** Path ids of a tree, its base's included (what the tree holds). */
  treePaths(id: number): Set<number> {
    const t = this.db.prepare('SELECT base FROM trees WHERE id = ?').get(id) as { base: number | null } | undefined;
    const rows = (tree: number) => this.db.prepare('SELECT path, present FROM tree_paths WHERE tree = ?').raw().all(tree) as Array<[number, number]>;
    const set = new Set<number>();
    if (t?.base != null) for (const [p] of rows(t.base)) set.add(p);
    for (const [p, present] of rows(id)) present ? set.add(p) : set.delete(p);
    return set;
  }

  /** Full trees worth trying as the base of a new one: `hint` (the previous revision's), then the newest of the same OS release. */
  baseCandidates(f: Pick<TreeFacts, 'os' | 'release'>, hint?: number): number[] {
    const out = hint === undefined ? [] : (this.db.prepare('SELECT COALESCE(base, id) FROM trees WHERE id = ?').pluck().all(hint) as number[]);
    if (f.os) out.push(...(this.db.prepare('SELECT id FROM trees WHERE base IS NULL AND os = ? AND release = ? ORDER BY id DESC LIMIT 3').pluck().all(f.os, f.release) as number[]));
    return [...new Set(out)];
  }

  /** Index one distinct tree once (its packages, and its paths: whole, or against the closest candidate base); returns its id. */
  addTree(key: string, f: TreeFacts, candidates: number[] = []): number {
    const existing = this.treeId(key);
    if (existing !== undefined) return existing;
    return this.db.transaction(() => {
      const mine = new Set(this.pathIds(f.paths));
      // the candidate needing fewest rows, if that is well under the whole tree
      let base: { id: number; added: number[]; removed: number[] } | undefined;
      for (const c of candidates) {
        const theirs = this.treePaths(c);
        const added = [...mine].filter((p) => !theirs.has(p));
        const removed = [...theirs].filter((p) => !mine.has(p));
        if (added.length + removed.length < mine.size / 2 && (!base || added.length + removed.length < base.added.length + base.removed.length)) base = { id: c, added, removed };
      }
      const id = this.insertTree(key, f, base?.id ?? null, base ? base.added : mine, base?.removed ?? []);
      return id;
    })();
  }

  /** One tree's rows: its packages, and the path ids it adds to its base (all of them without one) and removes from it. */
  insertTree(key: string, f: Omit<TreeFacts, 'paths'>, base: number | null, added: Iterable<number>, removed: Iterable<number>): number {
    const insPkg = this.db.prepare('INSERT OR IGNORE INTO pkgs(name, version, arch) VALUES (?, ?, ?)');
    const pkgId = this.db.prepare('SELECT id FROM pkgs WHERE name = ? AND version = ? AND arch = ?').pluck();
    const tp = this.db.prepare('INSERT OR IGNORE INTO tree_pkgs(pkg, tree) VALUES (?, ?)');
    const tf = this.db.prepare('INSERT OR IGNORE INTO tree_paths(path, tree, present) VALUES (?, ?, ?)');
    const id = Number(this.db.prepare('INSERT INTO trees(key, base, os, release, codename, pretty) VALUES (?, ?, ?, ?, ?, ?)').run(key, base, f.os, f.release, f.codename, f.pretty).lastInsertRowid);
    for (const p of f.packages) {
      insPkg.run(p.name, p.version, p.arch);
      tp.run(pkgId.get(p.name, p.version, p.arch), id);
    }
    for (const p of added) tf.run(p, id, 1);
    for (const p of removed) tf.run(p, id, 0);
    return id;
  }

  /** Path strings to ids, adding the new ones. */
  pathIds(paths: Iterable<string>): number[] {
    const ins = this.db.prepare('INSERT OR IGNORE INTO paths(path) VALUES (?)');
    const get = this.db.prepare('SELECT id FROM paths WHERE path = ?').pluck();
    const out: number[] = [];
    for (const p of paths) {
      ins.run(p);
      out.push(get.get(p) as number);
    }
    return out;
  }

  /** Recompute what the catalog shows of an image from its revisions and metadata (newest revision, counts, text index). */
  refresh(imageId: number): void {
    const img = this.db.prepare('SELECT * FROM images WHERE id = ?').get(imageId) as ImageRow;
    const latest = this.db.prepare('SELECT * FROM revisions WHERE image = ? ORDER BY created DESC, tag DESC LIMIT 1').get(imageId) as RevisionRow | undefined;
    const agg = this.db.prepare('SELECT COUNT(*) n, COALESCE(SUM(downloads), 0) d FROM revisions WHERE image = ?').get(imageId) as { n: number; d: number };
    const meta = parseMeta(img.meta);
    const t = latest?.tree != null ? this.tree(latest.tree) : undefined;
    // the tree's base (itself when it has none), for the path search (catalog-search.ts)
    const base = latest?.tree == null ? null : (this.db.prepare('SELECT COALESCE(base, id) FROM trees WHERE id = ?').pluck().get(latest.tree) as number);
    this.db.prepare('UPDATE images SET title = ?, description = ?, latest_tag = ?, latest_created = ?, tree = ?, base = ?, revisions = ?, downloads = ?, virtual_size = ? WHERE id = ?')
      .run(meta.title, meta.description, latest?.tag ?? null, latest?.created ?? '', latest?.tree ?? null, base, agg.n, agg.d, latest?.virtual_size ?? 0, imageId);
    this.db.prepare('DELETE FROM images_fts WHERE rowid = ?').run(imageId);
    this.db.prepare('INSERT INTO images_fts(rowid, name, title, description, authors, os, release) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(imageId, img.name.replace(/[/._-]/g, ' '), meta.title, meta.description, meta.authors.join(' '), t?.os ?? '', [t?.release, t?.codename].filter(Boolean).join(' '));
  }

  setMeta(imageId: number, meta: Metadata, published: boolean): void {
    this.db.transaction(() => {
      this.db.prepare('UPDATE images SET meta = ?, published = ? WHERE id = ?').run(JSON.stringify(meta), published ? 1 : 0, imageId);
      this.refresh(imageId);
    })();
  }

  countDownload(imageId: number, tag: string): void {
    this.db.transaction(() => {
      this.db.prepare('UPDATE revisions SET downloads = downloads + 1 WHERE image = ? AND tag = ?').run(imageId, tag);
      this.db.prepare('UPDATE images SET downloads = downloads + 1 WHERE id = ?').run(imageId);
    })();
  }

  treePackages(tree: number): Array<{ name: string; version: string; arch: string }> {
    return this.db.prepare('SELECT p.name, p.version, p.arch FROM tree_pkgs t JOIN pkgs p ON p.id = t.pkg WHERE t.tree = ? ORDER BY p.name, p.arch').all(tree) as never;
  }
}

export function parseMeta(text: string): Metadata {
  try {
    return { ...EMPTY_META, ...(JSON.parse(text) as Partial<Metadata>) };
  } catch {
    return { ...EMPTY_META };
  }
}
