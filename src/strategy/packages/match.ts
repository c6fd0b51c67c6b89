/**
 * Packages strategy, import side: which of an image's files are unmodified
 * package files. A file becomes a reference to a package only when
 *   - the image's dpkg database says an installed package owns it (info/*.list),
 *   - its content matches the MD5 that database recorded (md5sums, Conffiles),
 *   - and its size and SHA-256 equal that package's file in the .deb from the mirror.
 * Everything else -- edited conffiles, corrupted files, user data, generated
 * files, dpkg's own state -- stays the image's own file objects.
 */
import crypto from 'node:crypto';
import type { Disk } from '../../container/disk.js';
import type { FileSystem } from '../../fs/types.js';
import type { WritableStore } from '../../store/types.js';
import type { Digest } from '../../store/digest.js';
import { readDpkgFiles } from '../../os/dpkg-files.js';
import { readPath } from '../../os/fs-read.js';
import { readOsRelease } from '../../os/os-release.js';
import { CanonicalPaths } from '../../os/canonical-path.js';
import { debKey, findDebs, hostAptSources, parseDeb822Sources, parseSourcesList, sourceFromUrl, type AptSource, type DebRecord } from '../../os/apt-mirror.js';
import { ingredient, type Ingredient } from './ingredients.js';
import type { OnProgress } from '../../util/progress.js';
import { VmdnError } from '../../errors.js';

const READ = 2 << 20;
const PARALLEL_PACKAGES = 3;

export interface PackagesOptions {
  /** `--apt-source` URLs; default: the host's apt configuration, then the image's own. */
  aptSources?: string[];
  /** A package version the mirror lacks: store its files as the image's own, or fail. */
  fallback: 'files' | 'error';
  debCache?: string;
  /** `--keyring`: the keys an archive's InRelease must be signed with (default: Debian's archive keyring). */
  keyring?: string;
  signal?: AbortSignal;
  onAdded?: (d: Digest) => void;
  onProgress?: OnProgress;
}

export interface PackagesReport {
  installed: number;
  /** Packages taken from the mirror (and referenced by at least one file). */
  used: number;
  missing: Array<{ name: string; version: string; arch: string }>;
  /** Bytes downloaded from the mirror by this import. */
  mirrorBytes: number;
  sources: string[];
  files: { package: number; modified: number; fallback: number; own: number };
  bytes: { package: number; modified: number; fallback: number; own: number };
}

interface Candidate {
  pkg: number;
  size: number;
  sha256: string;
  md5: string;
}

export class PackageMatcher {
  /** `cands`: where each package file lies in the image; `orphan`: files of packages the mirror lacks. */
  constructor(
    readonly ingredients: Ingredient[],
    private readonly cands: Map<string, Candidate[]>,
    private readonly orphan: Set<string>,
    readonly report: PackagesReport,
  ) {}

  /** The package index whose file this one is, or undefined (the file is the image's own). */
  async match(path: string, size: number, content: Disk): Promise<number | undefined> {
    const all = size > 0 ? this.cands.get(path) : undefined;
    const cands = size > 0 ? all?.filter((c) => c.size === size) : undefined;
    if (!cands?.length) {
      // a package file of another size has been changed (an edited conffile, say)
      this.count(all?.length ? 'modified' : this.orphan.has(path) ? 'fallback' : 'own', size);
      return undefined;
    }
    const sha = crypto.createHash('sha256');
    const md5 = crypto.createHash('md5');
    for (let off = 0; off < size; off += READ) {
      const b = await content.read(off, Math.min(READ, size - off));
      sha.update(b);
      md5.update(b);
    }
    const s = sha.digest('hex');
    const m = md5.digest('hex');
    const hit = cands.find((c) => c.sha256 === s && c.md5 === m);
    this.count(hit ? 'package' : cands.some((c) => c.md5 !== m) ? 'modified' : 'own', size);
    return hit?.pkg;
  }

  count(kind: keyof PackagesReport['bytes'], size: number): void {
    this.report.files[kind]++;
    this.report.bytes[kind] += size;
  }
}

async function imageSources(fs: FileSystem): Promise<AptSource[]> {
  const out: AptSource[] = [];
  const list = await readPath(fs, '/etc/apt/sources.list', 1 << 20).catch(() => undefined);
  if (list) out.push(...parseSourcesList(list.toString('utf8')));
  for (const n of ['debian.sources', 'ubuntu.sources']) {
    const t = await readPath(fs, `/etc/apt/sources.list.d/${n}`, 1 << 20).catch(() => undefined);
    if (t) out.push(...parseDeb822Sources(t.toString('utf8')));
  }
  // a signed-by path names a file in the image, not on this host: the default keyring (or --keyring) applies
  return out.filter((s) => /^https?:\/\//.test(s.uri)).map(({ keyring: _, ...s }) => s);
}

/**
 * Read the image's dpkg database, find its packages on the mirror, make them
 * ingredients in the store. Undefined when the filesystem has no dpkg database.
 */
export async function preparePackages(fs: FileSystem, store: WritableStore, opts: PackagesOptions): Promise<PackageMatcher | undefined> {
  const db = await readDpkgFiles(fs);
  if (!db || db.packages.length === 0) return undefined;
  const codename = (await readOsRelease(fs))?.VERSION_CODENAME ?? '';
  let sources: AptSource[];
  if (opts.aptSources?.length) {
    if (!codename) throw new VmdnError('E_USAGE', '--apt-source needs the image release codename (VERSION_CODENAME in os-release), which this image lacks');
    sources = opts.aptSources.map((u) => sourceFromUrl(u, codename));
  } else {
    sources = hostAptSources();
    if (!sources.length) sources = await imageSources(fs);
  }
  if (!sources.length) throw new VmdnError('E_USAGE', 'no Debian archive configured: give --apt-source URL (neither the host nor the image has an apt sources list)');
  const wanted = new Set(db.packages.map((p) => debKey(p.name, p.version, p.arch)));
  const { found, indexes } = await findDebs(sources, db.arch, wanted, { keyring: opts.keyring, signal: opts.signal });
  const report: PackagesReport = { installed: db.packages.length, used: 0, missing: [], mirrorBytes: 0, sources: indexes, files: { package: 0, modified: 0, fallback: 0, own: 0 }, bytes: { package: 0, modified: 0, fallback: 0, own: 0 } };
  const todo: Array<{ p: (typeof db.packages)[number]; rec: DebRecord }> = [];
  for (const p of db.packages) {
    const rec = found.get(debKey(p.name, p.version, p.arch));
    if (rec) todo.push({ p, rec });
    else report.missing.push({ name: p.name, version: p.version, arch: p.arch });
  }
  if (report.missing.length && opts.fallback === 'error') {
    const m = report.missing[0]!;
    throw new VmdnError('E_NOT_FOUND', `package ${m.name} ${m.version} (${m.arch}) is not on the mirror${report.missing.length > 1 ? ` (and ${report.missing.length - 1} more)` : ''}; use --fallback files to store its files with the image`, { package: m.name, version: m.version, arch: m.arch, missing: report.missing });
  }
  // a few packages at a time: each is a download, a dpkg-deb decompression and hashing
  const ingredients: Ingredient[] = new Array(todo.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < todo.length) {
      const i = next++;
      ingredients[i] = await ingredient(store, todo[i]!.rec, { debCache: opts.debCache, signal: opts.signal, onAdded: opts.onAdded });
      report.mirrorBytes += ingredients[i]!.fetched;
      opts.onProgress?.({ phase: 'packages', done: ++done, total: todo.length, unit: 'packages' });
    }
  };
  await Promise.all(Array.from({ length: PARALLEL_PACKAGES }, worker));
  // keyed by where each file really is in the image (merged /usr: lib/x -> usr/lib/x)
  const canon = new CanonicalPaths(fs);
  const cands = new Map<string, Candidate[]>();
  for (const [pkg, { p }] of todo.entries()) {
    for (const [path, f] of ingredients[pkg]!.files) {
      const md5 = p.md5.get(path);
      // the image's database must vouch for the file: listed as this package's, with an MD5
      if (!md5 || !db.owners.get(path)?.includes(p.listName)) continue;
      const at = await canon.of(path);
      if (at === undefined) continue;
      (cands.get(at) ?? cands.set(at, []).get(at)!).push({ pkg, size: f.size, sha256: f.sha256, md5 });
    }
  }
  const orphan = new Set<string>();
  const missingLists = new Set(report.missing.map((m) => db.packages.find((p) => p.name === m.name && p.arch === m.arch)!.listName));
  for (const [path, lists] of db.owners) {
    if (!lists.some((l) => missingLists.has(l))) continue;
    const at = await canon.of(path);
    if (at !== undefined && !cands.has(at)) orphan.add(at);
  }
  return new PackageMatcher(ingredients, cands, orphan, report);
}
