/**
 * Catalog search: the visible images matching every given filter, sorted and
 * paged. The SQL text is assembled only from the fixed fragments below (which
 * filters are present); every value a visitor typed is a bound parameter, and
 * free text becomes quoted FTS5 prefix terms, so FTS5 syntax in it is inert.
 *
 * Filters are written `+i.tree IN (...)`: the unary plus keeps SQLite from
 * looking images up one by one through the tree index (then sorting all of
 * them); it walks the covering index of the sort order instead and stops after
 * the page. A filter matching every image costs ~2 ms instead of ~20 ms
 * (bench/portal.ts); a filter matching one costs ~1 ms instead of ~0.1.
 */
import { visibleSql, type Auth } from './access.js';
import type { CatalogDb } from './catalog-db.js';
import { VmdnError } from '../errors.js';

export interface CatalogQuery {
  q?: string;
  os?: string;
  release?: string;
  package?: string;
  version?: string;
  path?: string;
  sort?: 'newest' | 'downloads' | 'name';
  page?: number;
  per?: number;
}

export interface CatalogEntry {
  name: string;
  title: string;
  description: string;
  os: string;
  release: string;
  tag: string | null;
  created: string;
  revisions: number;
  downloads: number;
  virtualSize: number;
  published: boolean;
}

const ORDER = { newest: 'i.latest_created DESC, i.name', downloads: 'i.downloads DESC, i.name', name: 'i.name' } as const;
const MAX_TERMS = 16;

/** Words of the visitor's text as FTS5 prefix terms, each quoted: `"word"*`. Undefined when nothing searchable is left. */
export function ftsQuery(text: string): string | undefined {
  const words = text.match(/[\p{L}\p{N}]+/gu)?.slice(0, MAX_TERMS) ?? [];
  return words.length ? words.map((w) => `"${w}"*`).join(' ') : undefined;
}

/** URL query parameters as a CatalogQuery, checked. */
export function parseCatalogQuery(p: URLSearchParams): CatalogQuery {
  const text = (k: string) => {
    const v = p.get(k);
    if (v !== null && v.length > 4096) throw new VmdnError('E_USAGE', `${k}: at most 4096 characters`);
    return v === null || v === '' ? undefined : v;
  };
  const int = (k: string, dflt: number, max: number) => {
    const v = p.get(k);
    if (v === null || v === '') return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new VmdnError('E_USAGE', `${k}: an integer from 1 to ${max}`);
    return n;
  };
  const sort = p.get('sort') ?? 'newest';
  if (!(sort in ORDER)) throw new VmdnError('E_USAGE', 'sort: newest, downloads or name');
  return {
    q: text('q'), os: text('os'), release: text('release'), package: text('package'), version: text('version'), path: text('path'),
    sort: sort as CatalogQuery['sort'], page: int('page', 1, 1_000_000), per: int('per', 24, 100),
  };
}

export function searchCatalog(cat: CatalogDb, q: CatalogQuery, auth: Auth): { total: number; page: number; per: number; images: CatalogEntry[] } {
  const where: string[] = [];
  const args: unknown[] = [];
  const visible = visibleSql(auth);
  where.push(visible.sql);
  args.push(...visible.args);
  // an image with no revision left in the store is not in the catalog
  where.push('i.latest_tag IS NOT NULL');
  const fts = q.q === undefined ? undefined : ftsQuery(q.q);
  if (q.q !== undefined && fts === undefined) where.push('0');
  if (fts) {
    where.push('+i.id IN (SELECT rowid FROM images_fts WHERE images_fts MATCH ?)');
    args.push(fts);
  }
  if (q.os) {
    where.push('t.os = ?');
    args.push(q.os);
  }
  if (q.release) {
    where.push('(t.release = ? OR t.codename = ?)');
    args.push(q.release, q.release);
  }
  if (q.package) {
    where.push(q.version
      ? '+i.tree IN (SELECT tp.tree FROM pkgs p JOIN tree_pkgs tp ON tp.pkg = p.id WHERE p.name = ? AND p.version = ?)'
      : '+i.tree IN (SELECT tp.tree FROM pkgs p JOIN tree_pkgs tp ON tp.pkg = p.id WHERE p.name = ?)');
    args.push(q.package, ...(q.version ? [q.version] : []));
  }
  if (q.path) {
    // a path is the image's when its own tree adds it, or its base holds it and its tree does not remove it
    // (catalog-db.ts); images.base is the tree itself for a tree without a base, so both lists stay short
    where.push(`(+i.tree IN (SELECT tree FROM tree_paths WHERE path = (SELECT id FROM paths WHERE path = ?) AND present = 1)
      OR (+i.base IN (SELECT tree FROM tree_paths WHERE path = (SELECT id FROM paths WHERE path = ?) AND present = 1)
        AND NOT EXISTS (SELECT 1 FROM tree_paths r WHERE r.path = (SELECT id FROM paths WHERE path = ?) AND r.tree = i.tree)))`);
    args.push(q.path, q.path, q.path);
  }
  const from = 'FROM images i LEFT JOIN trees t ON t.id = i.tree';
  const cond = `WHERE ${where.join(' AND ')}`;
  // the count needs the trees only to filter by OS
  const total = cat.db.prepare(`SELECT COUNT(*) ${q.os || q.release ? from : 'FROM images i'} ${cond}`).pluck().get(...args) as number;
  const page = q.page ?? 1;
  const per = q.per ?? 24;
  const rows = cat.db.prepare(`SELECT i.name, i.title, substr(i.description, 1, 300) description, i.latest_tag, i.latest_created, i.revisions, i.downloads, i.virtual_size, i.published, t.os, t.release, t.codename ${from} ${cond} ORDER BY ${ORDER[q.sort ?? 'newest']} LIMIT ? OFFSET ?`)
    .all(...args, per, (page - 1) * per) as Array<{ name: string; title: string; description: string; os: string | null; release: string | null; latest_tag: string | null; latest_created: string; revisions: number; downloads: number; virtual_size: number; published: number }>;
  return {
    total, page, per,
    images: rows.map((r) => {
      return {
        name: r.name, title: r.title, description: r.description, os: r.os ?? '', release: r.release ?? '',
        tag: r.latest_tag, created: r.latest_created, revisions: r.revisions, downloads: r.downloads, virtualSize: r.virtual_size, published: r.published === 1,
      };
    }),
  };
}
