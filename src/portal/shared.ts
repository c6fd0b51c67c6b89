/**
 * What a revision shares with the other images a visitor may see, and what is
 * unique to it (data for the page's plots), at the packages layer (the same
 * package name, version and architecture) and the files layer (the same path).
 * Other images are compared by their newest revision, as the catalog is.
 * Files are kept as base + differences (catalog-db.ts); the counts here undo that.
 */
import { sendJson } from '../net/wire/http-api.js';
import { visibleSql, type Auth } from './access.js';
import { param, visibleRevision, type PortalContext, type Request } from './context.js';
import type { CatalogDb } from './catalog-db.js';

const TOP = 20;
type Layer = { total: number; unique: number; shared: Array<{ name: string; count: number }> };

function packages(cat: CatalogDb, tree: number, self: number, auth: Auth): Layer {
  const v = visibleSql(auth);
  const visible = v.sql;
  const total = cat.db.prepare('SELECT COUNT(*) FROM tree_pkgs WHERE tree = ?').pluck().get(tree) as number;
  const unique = cat.db.prepare(`SELECT COUNT(*) FROM tree_pkgs a WHERE a.tree = ? AND NOT EXISTS (
      SELECT 1 FROM tree_pkgs b JOIN images i ON i.tree = b.tree WHERE b.pkg = a.pkg AND i.id <> ? AND ${visible})`).pluck().get(tree, self, ...v.args) as number;
  const shared = cat.db.prepare(`SELECT i.name, COUNT(*) count FROM tree_pkgs a JOIN tree_pkgs b ON b.pkg = a.pkg JOIN images i ON i.tree = b.tree
      WHERE a.tree = ? AND i.id <> ? AND ${visible} GROUP BY i.id ORDER BY count DESC, i.name LIMIT ${TOP}`).all(tree, self, ...v.args) as Layer['shared'];
  return { total, unique, shared };
}

function files(cat: CatalogDb, tree: number, self: number, auth: Auth): Layer {
  const v = visibleSql(auth);
  const mine = cat.treePaths(tree);
  const others = cat.db.prepare(`SELECT i.name, i.tree, t.base FROM images i JOIN trees t ON t.id = i.tree WHERE i.id <> ? AND ${v.sql}`)
    .all(self, ...v.args) as Array<{ name: string; tree: number; base: number | null }>;
  const inUse = new Set(others.map((o) => o.tree));
  const onBase = new Map<number, Set<number>>();
  for (const o of others) if (o.base !== null) onBase.set(o.base, (onBase.get(o.base) ?? new Set()).add(o.tree));
  cat.db.exec('CREATE TEMP TABLE IF NOT EXISTS sel(path INTEGER PRIMARY KEY); DELETE FROM temp.sel');
  const ins = cat.db.prepare('INSERT INTO temp.sel(path) VALUES (?)');
  cat.db.transaction(() => { for (const p of mine) ins.run(p); })();
  // per tree: how many of my paths it adds (present 1) or removes from its base (present 0)
  const hits = new Map<string, number>();
  let unique = 0;
  let path = -1;
  let group: Array<[number, number]> = [];
  const close = () => {
    if (path < 0) return;
    const removers = new Set(group.filter(([, pr]) => pr === 0).map(([t]) => t));
    const shared = group.some(([t, pr]) => pr === 1 && (inUse.has(t) || [...(onBase.get(t) ?? [])].some((u) => !removers.has(u))));
    if (!shared) unique++;
  };
  for (const [p, t, pr] of cat.db.prepare('SELECT s.path, tp.tree, tp.present FROM temp.sel s JOIN tree_paths tp ON tp.path = s.path ORDER BY s.path').raw().iterate() as Iterable<[number, number, number]>) {
    if (p !== path) {
      close();
      path = p;
      group = [];
    }
    group.push([t, pr]);
    hits.set(`${t}:${pr}`, (hits.get(`${t}:${pr}`) ?? 0) + 1);
  }
  close();
  const h = (t: number, pr: number) => hits.get(`${t}:${pr}`) ?? 0;
  const shared = others.map((o) => ({ name: o.name, count: o.base === null ? h(o.tree, 1) : h(o.base, 1) - h(o.tree, 0) + h(o.tree, 1) }))
    .filter((o) => o.count > 0).sort((a, b) => b.count - a.count || (a.name < b.name ? -1 : 1)).slice(0, TOP);
  return { total: mine.size, unique, shared };
}

export async function shared(ctx: PortalContext, r: Request): Promise<void> {
  const v = await visibleRevision(ctx, param(r.url, 'ref'), r.auth);
  const empty = { total: 0, unique: 0, shared: [] };
  const tree = v.rev.tree;
  sendJson(r.res, 200, {
    ref: v.ref,
    packages: tree === null ? empty : packages(ctx.cat, tree, v.img.id, r.auth),
    files: tree === null ? empty : files(ctx.cat, tree, v.img.id, r.auth),
  });
}
