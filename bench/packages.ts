/**
 * Benchmark section "packages", computed from the stores and timings of the
 * files section's run (bench/files.ts imports every corpus image four ways
 * plus the packages strategy, and casync, in one run):
 *   - origin egress per delivery case when packages come from an edge's
 *     package cache (package objects are not fetched from the origin), beside
 *     the files and chunks strategies and casync;
 *   - the VM-specific bytes of each image (everything but package objects)
 *     against its user data limit: zstd -3 of a tar of the files that are not
 *     unmodified package files (root tree and the other filesystems' files);
 *   - rebuild time against the files strategy's export;
 *   - the study's Appendix A (strategy x performance factor), measured.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { casyncDelivery, readCaibx, scanCasyncStore } from './casync.js';
import { lackingObjects, sharedObjectBytes } from './vmdn-store.js';
import type { FilesBench } from './files.js';
import { LocalStore } from '../src/store/local/local-store.js';
import { resolveImage } from '../src/images/names.js';
import { loadTree } from '../src/model/objects.js';
import { openDisk } from '../src/container/open.js';
import { listVolumes } from '../src/fs/volumes.js';
import { packageObjects, type PackageRef } from '../src/model/package-ref.js';

const IMAGES = ['base', 'academic', 'academic2', 'database', 'turn'];
const mb = (b: number) => b / 1e6;
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

export interface PackagesBench {
  delivery: Array<{ target: string; held: string[]; casyncMB: number; fileCutsMB: number; filesMB: number; packagesColdMB: number; packagesWarmMB: number }>;
  vmSpecific: Array<{ image: string; vmSpecificMB: number; diskChunksMB: number; treeMB: number; ownFilesMB: number; userDataLimitMB: number; rootTreeLimitMB: number; packageFiles: number; ownFiles: number }>;
  rebuild: Array<{ image: string; packagesSeconds: number; filesSeconds: number }>;
  appendixA: Array<{ factor: string; how: string; casync: string; fileCuts: string; files: string; packages: string }>;
  targets: Array<{ target: string; measured: string; threshold: string; met: boolean }>;
}

/** Every object a packages-strategy store keeps for packages (tar chunks and file indexes). */
function storePackageObjects(store: string): Set<string> {
  const out = new Set<string>();
  const dir = path.join(store, 'packages');
  for (const n of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    if (!n.endsWith('.json')) continue;
    const ref = JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')) as PackageRef;
    for (const d of packageObjects(ref)) out.add(d);
  }
  return out;
}

/** The image's own regular files (not from packages), the disk chunks' digests and the tree objects. */
async function ownParts(store: string, image: string): Promise<{ own: string[]; packageFiles: number; diskChunks: Set<string>; tree: Set<string> }> {
  const s = await LocalStore.open(store);
  try {
    const { manifest } = await resolveImage(s, { name: image, tag: 'latest' });
    const own: string[] = [];
    let packageFiles = 0;
    const tree = new Set<string>();
    for (const f of manifest.filesystems ?? []) {
      for (const d of [...f.tree, ...f.times]) tree.add(d);
      for (const r of await loadTree(f, s)) {
        if (r.type !== 'file' || r.link !== undefined) continue;
        if (r.pkg !== undefined) packageFiles++;
        else own.push(`./${Buffer.from(r.path).toString('latin1')}`);
      }
    }
    return { own, packageFiles, diskChunks: new Set(manifest.chunks.map((c) => c[2])), tree };
  } finally {
    await s.close();
  }
}

/**
 * zstd -3 of one tar of the image's files that are not package files: the
 * listed files of the root tree, plus every file of its other filesystems
 * (the EFI partition's kernel copy and boot files), copied out with mtools.
 */
async function userDataLimit(raw: string, tree: string, files: string[], scratch: string, rootOnly = false): Promise<number> {
  const list = `${scratch}.list`;
  fs.writeFileSync(list, Buffer.from(files.join('\0'), 'latin1'));
  const other = `${scratch}.other`;
  fs.rmSync(other, { recursive: true, force: true });
  fs.mkdirSync(other, { recursive: true });
  const disk = await openDisk(raw);
  try {
    for (const v of (await listVolumes(disk)).volumes) {
      if (v.kind !== 'vfat' || rootOnly) continue;
      const dest = path.join(other, `part${v.index}`);
      fs.mkdirSync(dest);
      const r = spawnSync('mcopy', ['-s', '-n', '-i', `${raw}@@${v.offset}`, '::/*', dest], { encoding: 'utf8', env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
      if (r.status !== 0) throw new Error(`mcopy from ${raw} partition ${v.index}: ${r.stderr}`);
    }
  } finally {
    await disk.close();
  }
  const r = spawnSync('bash', ['-c', 'tar --null -C "$1" --no-recursion -T "$2" --recursion -C "$3" -cf - . | zstd -3 -q -c | wc -c', '_', tree, list, other], { encoding: 'utf8' });
  fs.rmSync(other, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`tar | zstd of ${tree}: ${r.stderr}`);
  return Number(r.stdout.trim());
}

export async function benchPackages(o: { corpusDir: string; workDir: string; files: FilesBench; log: (s: string) => void }): Promise<{ result: PackagesBench; markdown: string }> {
  const w = (p: string) => path.join(o.workDir, p);
  const pkgObjs = storePackageObjects(w('packages'));
  const result: PackagesBench = { delivery: [], vmSpecific: [], rebuild: [], appendixA: [], targets: [] };
  const sum = (xs: Array<{ stored: number }>) => xs.reduce((n, x) => n + x.stored, 0);
  for (const d of o.files.delivery) {
    const lacking = lackingObjects(w('packages'), d.target, d.held);
    result.delivery.push({ target: d.target, held: d.held, casyncMB: d.casyncMB, fileCutsMB: d.fileCuts, filesMB: d.files, packagesColdMB: mb(sum(lacking)), packagesWarmMB: mb(sum(lacking.filter((x) => !pkgObjs.has(x.digest)))) });
  }
  for (const image of IMAGES) {
    o.log(`${image}: VM-specific bytes and user data limit`);
    const all = lackingObjects(w('packages'), image, []);
    const parts = await ownParts(w('packages'), image);
    const mine = all.filter((x) => !pkgObjs.has(x.digest));
    const args = [path.join(o.corpusDir, `${image}.raw`), path.join(o.corpusDir, `${image}.tree`), parts.own, w(`${image}.own`)] as const;
    const limit = await userDataLimit(...args);
    const rootLimit = await userDataLimit(...args, true);
    result.vmSpecific.push({
      image, vmSpecificMB: mb(sum(mine)), diskChunksMB: mb(sum(mine.filter((x) => parts.diskChunks.has(x.digest)))), treeMB: mb(sum(mine.filter((x) => parts.tree.has(x.digest)))),
      ownFilesMB: mb(sum(mine.filter((x) => !parts.diskChunks.has(x.digest) && !parts.tree.has(x.digest)))), userDataLimitMB: mb(limit), rootTreeLimitMB: mb(rootLimit), packageFiles: parts.packageFiles, ownFiles: parts.own.length,
    });
  }
  for (const e of o.files.exports) result.rebuild.push({ image: e.image, packagesSeconds: e.packages.seconds, filesSeconds: e.files.seconds });
  result.appendixA = await appendixA(o, result);
  result.targets = targets(result, o.files);
  return { result, markdown: render(result) };
}

async function appendixA(o: { workDir: string; files: FilesBench }, r: PackagesBench): Promise<PackagesBench['appendixA']> {
  const w = (p: string) => path.join(o.workDir, p);
  const pkgObjs = storePackageObjects(w('packages'));
  const casChunks = await scanCasyncStore(w('casync'));
  const cas = new Map(await Promise.all(IMAGES.map(async (i) => [i, await readCaibx(w(`${i}.caibx`))] as const)));
  const fetch = (target: string, held: string[]) => ({
    casync: mb(casyncDelivery(cas.get(target)!, held.map((h) => cas.get(h)!), casChunks).total),
    fileCuts: mb(lackingObjects(w('fileCuts'), target, held).reduce((n, x) => n + x.stored, 0)),
    files: mb(lackingObjects(w('files'), target, held).reduce((n, x) => n + x.stored, 0)),
    packages: mb(lackingObjects(w('packages'), target, held).filter((x) => !pkgObjs.has(x.digest)).reduce((n, x) => n + x.stored, 0)),
  });
  const row = (factor: string, how: string, v: { casync: number; fileCuts: number; files: number; packages: number }, fmt = (x: number) => `${f1(x)} MB`) =>
    ({ factor, how, casync: fmt(v.casync), fileCuts: fmt(v.fileCuts), files: fmt(v.files), packages: fmt(v.packages) });
  const speed = (pick: (i: FilesBench['imports'][number]) => number) => o.files.imports.reduce((n, i) => n + pick(i), 0);
  const alloc = IMAGES.reduce((n, i) => n + allocatedOf(o.files, i), 0);
  // object re-use: share of what the five images reference that at least one other image references too
  const casRefs = new Map<string, number>();
  for (const idx of cas.values()) for (const id of new Set(idx.chunks.map((c) => c.id))) casRefs.set(id, (casRefs.get(id) ?? 0) + 1);
  let casAll = 0, casShared = 0;
  for (const [id, n] of casRefs) {
    casAll += (casChunks.get(id) ?? 0) * n;
    if (n > 1) casShared += (casChunks.get(id) ?? 0) * n;
  }
  const share = (s: string) => {
    const x = sharedObjectBytes(w(s));
    return x.referenced ? x.shared / x.referenced : 0;
  };
  const pct = (x: number) => `${(100 * x).toFixed(0)} %`;
  return [
    row('Deduplication of the operating system', 'MB to fetch: base, given database (the same OS inside another image)', fetch('base', ['database'])),
    row('Deduplication of the applications', 'MB to fetch: turn, given base+academic+database (a new application on a known OS)', fetch('turn', ['base', 'academic', 'database'])),
    row("Deduplication of the 'user data'", 'MB to fetch: database, given base+academic (new relation files, new application)', fetch('database', ['base', 'academic'])),
    row('Deduplication of revisions', 'MB to fetch: academic2, given academic (one more package, edited data)', fetch('academic2', ['academic'])),
    row('Speed of importing', 'MB/s of allocated data over the five imports (raw input)', {
      casync: alloc / speed((i) => i.casyncMake.seconds) / 1e6, fileCuts: alloc / speed((i) => i.fileCuts.seconds) / 1e6, files: alloc / speed((i) => i.files.seconds) / 1e6, packages: alloc / speed((i) => i.packages.seconds) / 1e6,
    }, (x) => `${f1(x)} MB/s`),
    row('Speed of reassembling', 'MB/s of allocated data over the five exports to raw (casync: not run; - )', {
      casync: NaN, fileCuts: alloc / o.files.exports.reduce((n, e) => n + e.fileCuts.seconds, 0) / 1e6, files: alloc / o.files.exports.reduce((n, e) => n + e.files.seconds, 0) / 1e6, packages: alloc / o.files.exports.reduce((n, e) => n + e.packages.seconds, 0) / 1e6,
    }, (x) => (Number.isNaN(x) ? '-' : `${f1(x)} MB/s`)),
    row('Re-usability of data objects', 'share of the bytes the five images reference that another image references too (packages: .deb objects count as shared ingredients)', {
      casync: casAll ? casShared / casAll : 0, fileCuts: share('fileCuts'), files: share('files'), packages: share('packages'),
    }, pct),
    { factor: 'VM-specific payload', how: 'MB of objects only this image needs, summed over the five (packages: all but .deb objects)', casync: '-', fileCuts: '-', files: '-', packages: `${f1(r.vmSpecific.reduce((n, v) => n + v.vmSpecificMB, 0))} MB` },
  ];
}

/** Allocated bytes of an image's raw file, as vmdn's import reported them. */
function allocatedOf(f: FilesBench, image: string): number {
  const i = f.imports.find((x) => x.image === image)!;
  return JSON.parse(i.fileCuts.stdout).stats.allocated as number;
}

function targets(r: PackagesBench, f: FilesBench): PackagesBench['targets'] {
  const out: PackagesBench['targets'] = [];
  for (const v of r.vmSpecific) {
    out.push({ target: `packages strategy, ${v.image}: VM-specific bytes <= 1.1x user data limit`, measured: `${f1(v.vmSpecificMB)} MB vs ${f1(v.userDataLimitMB)} MB (${f2(v.vmSpecificMB / v.userDataLimitMB)}x)`, threshold: '<= 1.1x', met: v.vmSpecificMB <= 1.1 * v.userDataLimitMB });
  }
  for (const x of r.rebuild) {
    out.push({ target: `packages strategy, ${x.image}: rebuild time / files strategy export time`, measured: `${f2(x.packagesSeconds / x.filesSeconds)} (${x.packagesSeconds} s vs ${x.filesSeconds} s)`, threshold: '<= 1.5', met: x.packagesSeconds <= 1.5 * x.filesSeconds });
  }
  for (const e of f.exports) out.push({ target: `packages strategy, ${e.image}: rebuilt file-identical`, measured: e.packagesIdentical ? 'yes' : 'no', threshold: 'yes', met: e.packagesIdentical });
  return out;
}

function render(r: PackagesBench): string {
  const row = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`;
  const lines = ['## Packages strategy (section "packages")', '', 'Origin egress per delivery case, MB (stored object bytes the target lacks). "Warm package cache": the site\'s edge already holds the .debs (universal ingredients, cached once near every site), so only VM-specific objects come from the origin. Same run as the files section.', ''];
  lines.push(row(['target \\| held', 'casync', 'vmdn chunks (file cuts)', 'vmdn files', 'vmdn packages, cold package cache', 'vmdn packages, warm package cache']));
  lines.push(row(Array(6).fill('---')));
  for (const d of r.delivery) lines.push(row([`${d.target} \\| ${d.held.join('+')}`, f1(d.casyncMB), f1(d.fileCutsMB), f1(d.filesMB), f1(d.packagesColdMB), f1(d.packagesWarmMB)]));
  lines.push('', 'VM-specific bytes of each image held nowhere else (all its objects but package ones; MB), and its user data limit: zstd -3 of one tar of its files that are not unmodified package files (the root tree\'s, and the EFI partition\'s: its kernel copy and boot config):', '');
  lines.push(row(['image', 'VM-specific', 'of which disk chunks (partition table, boot, EFI)', 'of which tree + times', 'of which own file contents', 'user data limit', 'ratio', 'limit without the EFI files (root tree only)', 'ratio to it', 'files from packages', 'own files']));
  lines.push(row(Array(11).fill('---')));
  for (const v of r.vmSpecific) lines.push(row([v.image, f1(v.vmSpecificMB), f1(v.diskChunksMB), f1(v.treeMB), f1(v.ownFilesMB), f1(v.userDataLimitMB), f2(v.vmSpecificMB / v.userDataLimitMB), f1(v.rootTreeLimitMB), f2(v.vmSpecificMB / v.rootTreeLimitMB), v.packageFiles, v.ownFiles]));
  lines.push('', 'The EFI partition holds a copy of the kernel (14 MB); vmdn cuts it as it cuts the linux-image package\'s vmlinuz, so those objects are the package\'s, not VM-specific. The column without the EFI files shows the ratio if that copy were not counted as the image\'s own file.');
  lines.push('', "The study's Appendix A (strategy x performance factor), with numbers measured in this run instead of ++/-- marks:", '');
  lines.push(row(['performance factor', 'measured as', 'casync (chunks over the disk)', 'vmdn chunks (file cuts)', 'vmdn files', 'vmdn packages (warm package cache)']));
  lines.push(row(Array(6).fill('---')));
  for (const a of r.appendixA) lines.push(row([a.factor, a.how, a.casync, a.fileCuts, a.files, a.packages]));
  lines.push('', 'Targets:', '');
  lines.push(row(['target', 'measured', 'threshold', 'met']));
  lines.push(row(Array(4).fill('---')));
  for (const x of r.targets) lines.push(row([x.target, x.measured, x.threshold, x.met ? 'yes' : 'NO']));
  return lines.join('\n');
}
