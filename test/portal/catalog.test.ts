/**
 * The catalog's search on generated data (the bench's generator, small) and
 * on hand-made trees stored as base + differences: every query kind the
 * bench times gives the right images (no timing here: bench/portal.ts).
 */
import { it, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { CatalogDb } from '../../src/portal/catalog-db.js';
import { ADMIN_AUTH, ANONYMOUS_AUTH } from '../../src/portal/access.js';
import { searchCatalog, ftsQuery } from '../../src/portal/catalog-search.js';
import { generateCatalog, queryKinds } from '../../bench/portal.js';

const t = tmpDir('vmdn-catalog-');
after(() => t.cleanup());
const names = (cat: CatalogDb, q: Parameters<typeof searchCatalog>[1], all = true) => searchCatalog(cat, { per: 100, ...q }, (all ? ADMIN_AUTH : ANONYMOUS_AUTH)).images.map((i) => i.name).sort();

it('generated catalog: each bench query kind runs, own packages and paths find their one image, common ones every image', () => {
  const cat = new CatalogDb(path.join(t.dir, 'gen.db'));
  try {
    const o = { images: 300, bases: 5, pathsPerBase: 200, seed: 7 };
    const g = generateCatalog(cat, o);
    const all = searchCatalog(cat, {}, ADMIN_AUTH).total;
    assert.equal(all, 300);
    const visible = searchCatalog(cat, {}, ANONYMOUS_AUTH).total;
    assert.ok(visible < all && visible > 250, `unpublished are hidden from visitors (${visible} of ${all})`);
    for (const [kind, make] of queryKinds(g, o)) assert.doesNotThrow(() => searchCatalog(cat, make(3), ANONYMOUS_AUTH), kind);
    for (const i of [0, 17, 299]) {
      assert.deepEqual(names(cat, { package: g.ownPackage(i) }), [g.imageName(i)]);
      assert.deepEqual(names(cat, { path: g.ownPath(i) }), [g.imageName(i)]);
    }
    assert.equal(searchCatalog(cat, { path: g.commonPath }, ADMIN_AUTH).total, 300);
    assert.equal(searchCatalog(cat, { package: g.commonPackage }, ADMIN_AUTH).total, 300);
    assert.ok(searchCatalog(cat, { q: g.word(0) }, ADMIN_AUTH).total > 0);
    // sorted and paged: pages do not overlap and cover the sort order
    const p1 = searchCatalog(cat, { sort: 'downloads', per: 10, page: 1 }, ADMIN_AUTH).images;
    const p2 = searchCatalog(cat, { sort: 'downloads', per: 10, page: 2 }, ADMIN_AUTH).images;
    assert.ok(p1[9]!.downloads >= p2[0]!.downloads);
    assert.equal(new Set([...p1, ...p2].map((i) => i.name)).size, 20);
  } finally {
    cat.close();
  }
});

it('trees kept as base + differences: removed paths are not found, added ones are, the rest are shared', () => {
  const cat = new CatalogDb(path.join(t.dir, 'delta.db'));
  try {
    const facts = (paths: string[]) => ({ os: 'debian', release: '12', codename: 'bookworm', pretty: '', packages: [], paths });
    const common = Array.from({ length: 20 }, (_, k) => `/usr/lib/f${k}`);
    const a = cat.addTree('a', facts([...common, '/only/a']));
    const b = cat.addTree('b', facts([...common.slice(1), '/only/b']), cat.baseCandidates({ os: 'debian', release: '12' }, a));
    assert.equal(cat.db.prepare('SELECT base FROM trees WHERE id = ?').pluck().get(b), a, 'b is stored against a');
    assert.equal(cat.db.prepare('SELECT COUNT(*) FROM tree_paths WHERE tree = ?').pluck().get(b), 3, 'b adds one path and removes two');
    assert.deepEqual([...cat.treePaths(b)].length, 20);
    for (const [name, tree] of [['img/a', a], ['img/b', b]] as const) {
      const img = cat.ensureImage(name, true);
      cat.db.prepare("INSERT INTO revisions(image, tag, manifest, created, virtual_size, data_size, strategy, tree) VALUES (?, 'v1', 'm', '2026-01-01', 1, 1, 'chunks', ?)").run(img.id, tree);
      cat.refresh(img.id);
    }
    assert.deepEqual(names(cat, { path: '/usr/lib/f0' }), ['img/a']);
    assert.deepEqual(names(cat, { path: '/usr/lib/f5' }), ['img/a', 'img/b']);
    assert.deepEqual(names(cat, { path: '/only/a' }), ['img/a']);
    assert.deepEqual(names(cat, { path: '/only/b' }), ['img/b']);
    assert.deepEqual(names(cat, { path: "/x' OR '1'='1" }), []);
  } finally {
    cat.close();
  }
});

it('free text becomes quoted prefix terms: FTS5 syntax typed by a visitor is inert', () => {
  assert.equal(ftsQuery('genome "lab" OR x*'), '"genome"* "lab"* "OR"* "x"*');
  assert.equal(ftsQuery('*()"^:'), undefined);
  assert.equal(ftsQuery('Grüße 日本'), '"Grüße"* "日本"*');
});
