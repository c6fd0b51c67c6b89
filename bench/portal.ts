/**
 * The portal section (`BENCH_SECTIONS=portal npm run bench`): catalog search
 * over a generated, seeded catalog of 10,000 images (issue 15 asks for p95
 * under 100 ms). The catalog is built the way the portal keeps it
 * (src/portal/catalog-db.ts): BASES distinct systems of PATHS paths each (a
 * common core plus their own), every image one of them plus its own files
 * (a delta tree) and packages, with titles and descriptions from a word list.
 * Each query kind runs ROUNDS times with varied values, in process (the HTTP
 * layer adds a JSON encode and a socket write, well under a millisecond).
 *   BENCH_PORTAL_IMAGES (10000), BENCH_PORTAL_BASES (100), BENCH_PORTAL_PATHS (20000), BENCH_PORTAL_SEED (15)
 */
import fs from 'node:fs';
import os from 'node:os';
import { CatalogDb } from '../src/portal/catalog-db.js';
import { ANONYMOUS_AUTH } from '../src/portal/access.js';
import { searchCatalog, type CatalogQuery } from '../src/portal/catalog-search.js';

export interface GenOptions {
  images: number;
  bases: number;
  pathsPerBase: number;
  seed: number;
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = 'genome protein cluster lab teaching python jupyter analysis climate model simulation physics chemistry database web server kernel compiler student course workshop pipeline imaging microscopy astronomy survey statistics learning neural network graph robotics control signal audio video geology ocean ecology'.split(' ');
const OSES = [['debian', '12', 'bookworm'], ['debian', '11', 'bullseye'], ['ubuntu', '22.04', 'jammy'], ['ubuntu', '24.04', 'noble'], ['fedora', '40', '']] as const;

/** What the generator put where: the bench and its test pick query values from it. */
export interface Generated {
  commonPath: string;
  basePath: (b: number) => string;
  ownPath: (i: number) => string;
  commonPackage: string;
  ownPackage: (i: number) => string;
  word: (i: number) => string;
  imageName: (i: number) => string;
}

/** Where the generator puts things (a pure function of the options). */
export function generated(o: GenOptions): Generated {
  return {
    commonPath: '/usr/bin/core6',
    basePath: (b) => `/usr/share/doc/base${b}/file${Math.floor(o.pathsPerBase / 2)}`,
    ownPath: (i) => `/home/user${i}/data/result-3.csv`,
    commonPackage: 'libc6',
    ownPackage: (i) => `app-${i}`,
    word: (i) => WORDS[i % WORDS.length]!,
    imageName: (i) => `group${i % 97}/image-${i}`,
  };
}

export function generateCatalog(cat: CatalogDb, o: GenOptions): Generated {
  const r = mulberry32(o.seed);
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)]!;
  const core = Math.floor(o.pathsPerBase * 0.4);
  const g = generated(o);
  const baseIds: number[] = [];
  const basePkgs: Array<Array<{ name: string; version: string; arch: string }>> = [];
  cat.db.transaction(() => {
    const corePaths = cat.pathIds(Array.from({ length: core }, (_, k) => (k % 3 === 0 ? `/usr/bin/core${k}` : k % 3 === 1 ? `/usr/lib/x86_64-linux-gnu/libcore${k}.so` : `/etc/core/conf${k}`)));
    for (let b = 0; b < o.bases; b++) {
      const own = cat.pathIds(Array.from({ length: o.pathsPerBase - core }, (_, k) => `/usr/share/doc/base${b % 40}/file${k + (b >= 40 ? o.pathsPerBase : 0)}`));
      const [os, release, codename] = OSES[b % OSES.length]!;
      const pkgs = [{ name: 'libc6', version: '2.36-9', arch: 'amd64' }];
      for (let k = 0; k < 300; k++) pkgs.push({ name: `pkg${Math.floor(r() * 3000)}`, version: `1.${Math.floor(r() * 3)}-1`, arch: 'amd64' });
      basePkgs.push(pkgs);
      baseIds.push(cat.insertTree(`base${b}`, { os, release, codename, pretty: `${os} ${release}`, packages: pkgs }, null, [...corePaths, ...own], []));
    }
  })();
  const revision = cat.db.prepare('INSERT INTO revisions(image, tag, manifest, created, virtual_size, data_size, strategy, tree, downloads) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const t0 = Date.parse('2024-01-01T00:00:00Z');
  for (let start = 0; start < o.images; start += 1000) {
    cat.db.transaction(() => {
      for (let i = start; i < Math.min(o.images, start + 1000); i++) {
        const b = Math.floor(r() * o.bases);
        const [os, release, codename] = OSES[b % OSES.length]!;
        const added = cat.pathIds(Array.from({ length: 20 }, (_, k) => (k === 0 ? g.ownPath(i) : `/home/user${i}/work/f${k}`)));
        const removed = cat.pathIds([`/etc/core/conf${2 + 3 * Math.floor(r() * (core / 3 - 1))}`]);
        const tree = cat.insertTree(`img${i}`, { os, release, codename, pretty: '', packages: [...basePkgs[b]!, { name: g.ownPackage(i), version: '1.0', arch: 'all' }] }, baseIds[b]!, added, removed);
        const img = cat.ensureImage(g.imageName(i), r() > 0.05);
        const words = Array.from({ length: 30 }, () => pick(WORDS));
        cat.db.prepare('UPDATE images SET meta = ? WHERE id = ?').run(JSON.stringify({ title: `${g.word(i)} ${pick(WORDS)} image ${i}`, description: words.join(' '), authors: [`Author ${i % 500}`], citation: '', doi: '', license: 'MIT', links: [] }), img.id);
        revision.run(img.id, 'v1', `m${i}`.padEnd(64, '0'), new Date(t0 + i * 3600_000 + Math.floor(r() * 1e6)).toISOString(), 2 << 30, 1 << 30, 'chunks', tree, Math.floor(r() * 1000));
        cat.refresh(img.id);
      }
    })();
  }
  return g;
}

/** Query kinds measured: a name and the query of round k. */
export function queryKinds(g: Generated, o: GenOptions): Array<[string, (k: number) => CatalogQuery]> {
  return [
    ['browse newest, page 1', () => ({})],
    ['browse most downloaded, page 100', () => ({ sort: 'downloads', page: 100 })],
    ['text, one word', (k) => ({ q: g.word(k) })],
    ['text, two words (prefix)', (k) => ({ q: `${g.word(k)} ${g.word(k + 7).slice(0, 3)}` })],
    ['os + release', (k) => ({ os: OSES[k % OSES.length]![0], release: OSES[k % OSES.length]![2] || OSES[k % OSES.length]![1] })],
    ['package in every image', () => ({ package: g.commonPackage })],
    ['package + version', (k) => ({ package: `pkg${k % 3000}`, version: '1.1-1' })],
    ['package of one image', (k) => ({ package: g.ownPackage((k * 37) % o.images) })],
    ['path in every image', () => ({ path: g.commonPath })],
    ['path of one base system', (k) => ({ path: g.basePath(k % Math.min(40, o.bases)) })],
    ['path of one image', (k) => ({ path: g.ownPath((k * 53) % o.images) })],
    ['text + package + path, by downloads', (k) => ({ q: g.word(k), package: g.commonPackage, path: g.commonPath, sort: 'downloads' })],
  ];
}

export interface PortalBench {
  images: number;
  bases: number;
  pathsPerBase: number;
  generateSeconds: number;
  dbBytes: number;
  rows: { treePaths: number; paths: number; treePkgs: number };
  queries: Array<{ kind: string; p50ms: number; p95ms: number; maxms: number; cpuP95ms: number; meanResults: number }>;
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;

/** Each query kind `rounds` times on a generated catalog: wall and CPU percentiles. */
export function measureQueries(cat: CatalogDb, g: Generated, o: GenOptions, rounds: number): PortalBench['queries'] {
  return queryKinds(g, o).map(([kind, make]) => {
    const ms: number[] = [];
    const cpu: number[] = [];
    let results = 0;
    for (let k = 0; k < rounds; k++) {
      const s = process.hrtime.bigint();
      const c = process.cpuUsage();
      results += searchCatalog(cat, make(k), ANONYMOUS_AUTH).total;
      const d = process.cpuUsage(c);
      ms.push(Number(process.hrtime.bigint() - s) / 1e6);
      cpu.push((d.user + d.system) / 1e3);
    }
    return { kind, p50ms: pct(ms, 50), p95ms: pct(ms, 95), maxms: Math.max(...ms), cpuP95ms: pct(cpu, 95), meanResults: Math.round(results / rounds) };
  });
}

export function benchPortal(file: string, o: GenOptions, rounds = 100): { result: PortalBench; markdown: string } {
  fs.rmSync(file, { force: true });
  const cat = new CatalogDb(file);
  try {
    const load0 = os.loadavg()[0];
    const t0 = process.hrtime.bigint();
    const g = generateCatalog(cat, o);
    const generateSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    cat.db.pragma('wal_checkpoint(TRUNCATE)');
    const count = (t: string) => cat.db.prepare(`SELECT COUNT(*) FROM ${t}`).pluck().get() as number;
    const queries = measureQueries(cat, g, o, rounds);
    const result: PortalBench = { ...o, generateSeconds, dbBytes: fs.statSync(file).size, rows: { treePaths: count('tree_paths'), paths: count('paths'), treePkgs: count('tree_pkgs') }, queries };
    delete (result as Partial<GenOptions>).seed;
    const md = [
      '## Portal catalog search',
      '',
      `${o.images} generated images (seed ${o.seed}) over ${o.bases} base systems of ${o.pathsPerBase} paths, each image 20 own paths and 1 own package on top; catalog ${(result.dbBytes / 2 ** 20).toFixed(0)} MiB (${result.rows.treePaths} tree-path rows, ${result.rows.paths} distinct paths), generated in ${generateSeconds.toFixed(1)} s. ${rounds} searches per kind, in process (wall clock, and the process's CPU time, which the 2-core machine's other load does not inflate), visitor's view (unpublished hidden), page of 24 plus the total count. Load average ${load0.toFixed(1)} before, ${os.loadavg()[0].toFixed(1)} after (${os.cpus().length} CPUs): wall-clock times grow with it, CPU times do not.`,
      '',
      '| query | p50 ms | p95 ms | max ms | CPU p95 ms | results (mean) |',
      '|---|---:|---:|---:|---:|---:|',
      ...queries.map((q) => `| ${q.kind} | ${q.p50ms.toFixed(2)} | ${q.p95ms.toFixed(2)} | ${q.maxms.toFixed(1)} | ${q.cpuP95ms.toFixed(2)} | ${q.meanResults} |`),
    ].join('\n');
    return { result, markdown: md };
  } finally {
    cat.close();
  }
}
