/**
 * What a revision shares with the other images a visitor may see, and what is
 * unique to it (data for the page's plots), at the packages layer (the same
 * package name, version and architecture) and the files layer (the same path).
 * Other images are compared by their newest revision, as the catalog is.
 */
import { sendJson } from '../net/wire/http-api.js';
import { seesUnpublished } from './access.js';
import { param, visibleRevision, type PortalContext, type Request } from './context.js';
import type { CatalogDb } from './catalog-db.js';

const TOP = 20;

function layer(cat: CatalogDb, table: 'tree_pkgs' | 'tree_paths', col: 'pkg' | 'path', tree: number, self: number, all: boolean): { total: number; unique: number; shared: Array<{ name: string; count: number }> } {
  const visible = all ? '1' : 'i.published = 1';
  const total = cat.db.prepare(`SELECT COUNT(*) FROM ${table} WHERE tree = ?`).pluck().get(tree) as number;
  const unique = cat.db.prepare(`SELECT COUNT(*) FROM ${table} a WHERE a.tree = ? AND NOT EXISTS (
      SELECT 1 FROM ${table} b JOIN images i ON i.tree = b.tree WHERE b.${col} = a.${col} AND i.id <> ? AND ${visible})`).pluck().get(tree, self) as number;
  const shared = cat.db.prepare(`SELECT i.name, COUNT(*) count FROM ${table} a JOIN ${table} b ON b.${col} = a.${col} JOIN images i ON i.tree = b.tree
      WHERE a.tree = ? AND i.id <> ? AND ${visible} GROUP BY i.id ORDER BY count DESC, i.name LIMIT ${TOP}`).all(tree, self) as Array<{ name: string; count: number }>;
  return { total, unique, shared };
}

export async function shared(ctx: PortalContext, r: Request): Promise<void> {
  const v = await visibleRevision(ctx, param(r.url, 'ref'), r.auth);
  const all = seesUnpublished(r.auth);
  const empty = { total: 0, unique: 0, shared: [] };
  const tree = v.rev.tree;
  sendJson(r.res, 200, {
    ref: v.ref,
    packages: tree === null ? empty : layer(ctx.cat, 'tree_pkgs', 'pkg', tree, v.img.id, all),
    files: tree === null ? empty : layer(ctx.cat, 'tree_paths', 'path', tree, v.img.id, all),
  });
}
