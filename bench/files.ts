/**
 * Benchmark section "files": file-aware dedup on the corpus delivery cases,
 * side by side in one run with casync (the anchor), over four ways of storing:
 *   casync make            (anchor: chunks over the raw disk)
 *   vmdn --cuts disk       (chunks over the raw disk)
 *   vmdn --cuts files      (chunks cut along file data; the default)
 *   vmdn --strategy files  (ext4 as parameters + file tree, rebuilt on export)
 *   vmdn --strategy packages (the same, package files as references to .debs;
 *                          analysed in bench/packages.ts from these stores)
 * and the file-level limit: zstd -3 of a tar of the target's regular files
 * whose content no held image contains (from the NAME.tree directories).
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { timed, dropCaches, type Timed } from './measure.js';
import { casyncDelivery, readCaibx, scanCasyncStore } from './casync.js';
import { vmdnDelivery } from './vmdn-store.js';
import { REPO } from './net-procs.js';
import { pulledDelivery, type PulledDelivery } from './pack-pull.js';

const IMAGES = ['base', 'academic', 'academic2', 'database', 'turn'];
const CASES = [
  { target: 'academic', held: ['base'] },
  { target: 'academic2', held: ['academic'] },
  { target: 'database', held: ['base', 'academic'] },
  { target: 'turn', held: ['base', 'academic', 'database'] },
];
/** .debs downloaded once per machine, verified on every use (the import refetches what is missing). */
export const DEB_CACHE = process.env.VMDN_DEB_CACHE ?? '/var/cache/vmdn-debs';
const WAYS = { disk: ['--cuts', 'disk'], fileCuts: ['--cuts', 'files'], files: ['--strategy', 'files'], packages: ['--strategy', 'packages', '--deb-cache', DEB_CACHE] } as const;
type Way = keyof typeof WAYS;

export interface FilesBench {
  imports: Array<{ image: string; casyncMake: Timed } & Record<Way, Timed>>;
  exports: Array<{ image: string; fileCuts: Timed; files: Timed; filesIdentical: boolean; packages: Timed; packagesIdentical: boolean }>;
  delivery: Array<{ target: string; held: string[]; limitMB: number; casyncMB: number } & Record<Way, number> & { pulled: Record<'files' | 'filesPacked' | 'fileCutsPacked', PulledDelivery> }>;
  targets: Array<{ target: string; measured: string; threshold: string; met: boolean }>;
}

const mb = (b: number) => b / 1e6;
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

/** sha256 of every regular file under a tree, cached in the work dir. */
function fileHashes(tree: string, cache: string): Map<string, string> {
  if (!fs.existsSync(cache)) {
    const r = spawnSync('bash', ['-c', 'cd "$1" && find . -type f -print0 | xargs -0 -r sha256sum', '_', tree], { encoding: 'utf8', maxBuffer: 1 << 30 });
    if (r.status !== 0) throw new Error(`hashing ${tree}: ${r.stderr}`);
    fs.writeFileSync(cache, r.stdout);
  }
  const m = new Map<string, string>();
  for (const line of fs.readFileSync(cache, 'utf8').split('\n')) if (line) m.set(line.slice(66), line.slice(0, 64));
  return m;
}

/** zstd -3 of a tar of the target's files whose content the held trees lack. */
function fileLevelLimit(corpus: string, work: string, target: string, held: string[]): number {
  const hashes = (n: string) => fileHashes(path.join(corpus, `${n}.tree`), path.join(work, `${n}.sha256`));
  const have = new Set(held.flatMap((h) => [...hashes(h).values()]));
  const lacking = [...hashes(target)].filter(([, h]) => !have.has(h)).map(([p]) => p);
  const list = path.join(work, `${target}.lacking`);
  fs.writeFileSync(list, lacking.join('\0'));
  const r = spawnSync('bash', ['-c', 'cd "$1" && tar --null -T "$2" -cf - | zstd -3 -q -c | wc -c', '_', path.join(corpus, `${target}.tree`), list], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`file-level limit for ${target}: ${r.stderr}`);
  return Number(r.stdout.trim());
}

export async function benchFiles(o: { corpusDir: string; workDir: string; log: (s: string) => void }): Promise<{ result: FilesBench; markdown: string }> {
  const w = (p: string) => path.join(o.workDir, p);
  fs.rmSync(o.workDir, { recursive: true, force: true });
  fs.mkdirSync(w('tmp'), { recursive: true });
  const vmdn = path.join(REPO, 'bin', 'vmdn.js');
  const t = (cmd: string, args: string[]) => {
    dropCaches();
    return timed(cmd, args, { tmpDir: w('tmp'), timeoutMs: 30 * 60_000 });
  };
  const ok = (x: Timed, what: string) => {
    if (x.exitCode !== 0) throw new Error(`${what} failed: ${x.stderrTail}`);
    return x;
  };
  const result: FilesBench = { imports: [], exports: [], delivery: [], targets: [] };
  for (const image of IMAGES) {
    const raw = path.join(o.corpusDir, `${image}.raw`);
    o.log(`${image}: casync make`);
    const row = { image, casyncMake: ok(await t('casync', ['make', `--store=${w('casync')}`, w(`${image}.caibx`), raw]), 'casync make') } as FilesBench['imports'][number];
    for (const way of Object.keys(WAYS) as Way[]) {
      o.log(`${image}: vmdn import ${WAYS[way].join(' ')}`);
      row[way] = ok(await t(process.execPath, [vmdn, 'import', raw, '--name', image, '--store', w(way), '--json', ...WAYS[way]]), `import ${way}`);
      // the archive's address comes from this machine's apt configuration: not for the committed report
      row[way].stdout = row[way].stdout.replace(/"sources":\s*\[[^\]]*\]/g, '"sources": ["(the host apt sources)"]');
    }
    result.imports.push(row);
  }
  for (const image of IMAGES) {
    o.log(`${image}: export file-aware chunks, files and packages strategies`);
    const outC = w(`${image}.chunks.raw`);
    const outF = w(`${image}.files.raw`);
    const outP = w(`${image}.packages.raw`);
    const fileCuts = ok(await t(process.execPath, [vmdn, 'export', image, outC, '--store', w('fileCuts'), '--json']), 'export chunks');
    const files = ok(await t(process.execPath, [vmdn, 'export', image, outF, '--store', w('files'), '--json']), 'export files');
    const packages = ok(await t(process.execPath, [vmdn, 'export', image, outP, '--store', w('packages'), '--json']), 'export packages');
    const same = (a: string, b: string) => {
      const d = spawnSync(process.execPath, [vmdn, 'diff', a, b, '--layer', 'files', '--json'], { encoding: 'utf8', maxBuffer: 1 << 28 });
      return d.status === 0 && JSON.parse(d.stdout).identical === true;
    };
    result.exports.push({ image, fileCuts, files, filesIdentical: same(outC, outF), packages, packagesIdentical: same(outC, outP) });
    for (const f of [outC, outF, outP]) fs.rmSync(f, { force: true });
  }
  const casChunks = await scanCasyncStore(w('casync'));
  for (const c of CASES) {
    o.log(`${c.target}: delivery and file-level limit`);
    const idx = await readCaibx(w(`${c.target}.caibx`));
    const held = await Promise.all(c.held.map((h) => readCaibx(w(`${h}.caibx`))));
    const row = { target: c.target, held: c.held, limitMB: mb(fileLevelLimit(o.corpusDir, o.workDir, c.target, c.held)), casyncMB: mb(casyncDelivery(idx, held, casChunks).total) } as FilesBench['delivery'][number];
    for (const way of Object.keys(WAYS) as Way[]) row[way] = mb(vmdnDelivery(w(way), c.target, c.held).total);
    // what a pull really moves: objects as stored, or in packs against the held images
    o.log(`${c.target}: pulls from an origin into a cache holding ${c.held.join('+')}`);
    row.pulled = {
      files: await pulledDelivery(w('files'), w('pull-cache'), c.target, c.held, false),
      filesPacked: await pulledDelivery(w('files'), w('pull-cache'), c.target, c.held, true),
      fileCutsPacked: await pulledDelivery(w('fileCuts'), w('pull-cache'), c.target, c.held, true),
    };
    result.delivery.push(row);
  }
  result.targets = targets(result);
  return { result, markdown: render(result) };
}

function targets(r: FilesBench): FilesBench['targets'] {
  const out: FilesBench['targets'] = [];
  for (const d of r.delivery) {
    const packed = mb(d.pulled.filesPacked.bytes);
    out.push({ target: `files strategy, ${d.target}: bytes a pull moves (packs) <= 1.1x file-level limit`, measured: `${f1(packed)} MB vs ${f1(d.limitMB)} MB (${f2(packed / d.limitMB)}x)`, threshold: '<= 1.1x', met: packed <= 1.1 * d.limitMB });
    out.push({ target: `file-aware chunks, ${d.target}: below casync`, measured: `${f1(d.fileCuts)} MB vs ${f1(d.casyncMB)} MB (${f2(d.fileCuts / d.casyncMB)}x)`, threshold: d.target === 'turn' ? '<= 0.5x' : '< 1.0x', met: d.fileCuts / d.casyncMB <= (d.target === 'turn' ? 0.5 : 0.999) });
  }
  for (const i of r.imports) {
    for (const way of ['fileCuts', 'files', 'packages'] as const) {
      const ratio = i.casyncMake.seconds / i[way].seconds;
      out.push({ target: `import ${way}, ${i.image}: casync make time / vmdn time`, measured: f2(ratio), threshold: '>= 1.0', met: ratio >= 1 });
    }
  }
  for (const e of r.exports) {
    const ratio = e.files.seconds / e.fileCuts.seconds;
    out.push({ target: `export files strategy, ${e.image}: time / chunks export time`, measured: `${f2(ratio)} (${e.files.seconds} s vs ${e.fileCuts.seconds} s)`, threshold: '<= 2.0', met: ratio <= 2 });
  }
  return out;
}

function render(r: FilesBench): string {
  const row = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`;
  const lines = ['## File-aware dedup (section "files")', '', 'MB a target must fetch, one run, every column measured here:', ''];
  lines.push(row(['target \\| held', 'file-level limit', 'casync', 'vmdn chunks (disk cuts)', 'vmdn chunks (file cuts)', 'vmdn files strategy', 'vmdn packages strategy (cold package cache)', 'files / limit', 'file cuts / casync']));
  lines.push(row(Array(9).fill('---')));
  for (const d of r.delivery) lines.push(row([`${d.target} \\| ${d.held.join('+')}`, f1(d.limitMB), f1(d.casyncMB), f1(d.disk), f1(d.fileCuts), f1(d.files), f1(d.packages), f2(d.files / d.limitMB), f2(d.fileCuts / d.casyncMB)]));
  lines.push('', 'MB a pull really moves from an origin into a cache holding the held images (in process on loopback; the same store as above). "packs": the missing objects compressed together against the cache\'s images (`POST /v1/objects/pack`); "as stored": batches of the stored objects (`vmdn pull --no-packs`). Seconds are the whole pull, server and client on the same 2 cores:', '');
  lines.push(row(['target \\| held', 'file-level limit', 'casync', 'files, as stored', 'files, packs', 'file cuts, packs', 'files packs / limit', 'file cuts packs / casync', 'seconds (files as stored, packs)']));
  lines.push(row(Array(9).fill('---')));
  for (const d of r.delivery) {
    const p = d.pulled;
    lines.push(row([`${d.target} \\| ${d.held.join('+')}`, f1(d.limitMB), f1(d.casyncMB), f1(mb(p.files.bytes)), f1(mb(p.filesPacked.bytes)), f1(mb(p.fileCutsPacked.bytes)), f2(mb(p.filesPacked.bytes) / d.limitMB), f2(mb(p.fileCutsPacked.bytes) / d.casyncMB), `${f1(p.files.seconds)}, ${f1(p.filesPacked.seconds)}`]));
  }
  lines.push('', 'Import (raw input; seconds, peak RSS MB):', '');
  lines.push(row(['image', 'casync make', 'vmdn disk cuts', 'vmdn file cuts', 'vmdn files', 'vmdn packages', 'casync/file cuts', 'casync/files', 'casync/packages']));
  lines.push(row(Array(9).fill('---')));
  const s = (x: Timed) => `${x.seconds} s, ${f1(x.maxRssBytes / 1e6)}`;
  for (const i of r.imports) lines.push(row([i.image, s(i.casyncMake), s(i.disk), s(i.fileCuts), s(i.files), s(i.packages), f2(i.casyncMake.seconds / i.fileCuts.seconds), f2(i.casyncMake.seconds / i.files.seconds), f2(i.casyncMake.seconds / i.packages.seconds)]));
  lines.push('', 'Export to raw (seconds, peak RSS MB); the files export rebuilds ext4 with mke2fs and is compared to the chunks export with `vmdn diff --layer files`:', '');
  lines.push(row(['image', 'file-cuts chunks export', 'files strategy export', 'packages strategy export', 'files/chunks', 'packages/files', 'file-identical (files, packages)']));
  lines.push(row(Array(7).fill('---')));
  for (const e of r.exports) lines.push(row([e.image, s(e.fileCuts), s(e.files), s(e.packages), f2(e.files.seconds / e.fileCuts.seconds), f2(e.packages.seconds / e.files.seconds), `${e.filesIdentical ? 'yes' : 'NO'}, ${e.packagesIdentical ? 'yes' : 'NO'}`]));
  lines.push('', 'Targets:', '');
  lines.push(row(['target', 'measured', 'threshold', 'met']));
  lines.push(row(Array(4).fill('---')));
  for (const x of r.targets) lines.push(row([x.target, x.measured, x.threshold, x.met ? 'yes' : 'NO']));
  return lines.join('\n');
}
