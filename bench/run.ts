/**
 * `npm run bench`: vmdn against casync and qemu-img on the shared corpus of
 * five Debian VM images. Writes bench/results/latest.{json,md} and a
 * timestamped copy. Every figure is measured in the run; nothing is
 * hard-coded except the project's casync reference figures, shown as such.
 *
 * Environment:
 *   BENCH_IMAGES       comma list, subset of base,academic,academic2,database,turn (default: all)
 *   BENCH_CHUNKERS     comma list of chunker specs to compare (default below)
 *   BENCH_BUDGET_MIN   wall-clock budget in minutes; chunker specs that would overrun it are skipped (default 25)
 *   BENCH_WORKDIR      scratch directory, emptied at start and end (default /var/tmp/vmdn-bench)
 *   BENCH_DROP_CACHES  0 to keep the page cache between timed steps (default: drop it when permitted)
 *   BENCH_RESULTS_DIR  where to write results (default bench/results)
 *   BENCH_PARTS        compare,chunkers (default both): "compare" is vmdn vs casync and qemu-img
 *                      (import, export, store, delivery); "chunkers" the chunker comparison alone
 *                      writes chunkers-latest.{json,md} instead of latest.{json,md}
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CHUNKER_SPEC } from '../src/strategy/defaults.js';
import { formatChunkerSpec, parseChunkerSpec } from '../src/strategy/chunker.js';
import { casyncDelivery, checkIndex, chunkCompression, readCaibx, scanCasyncStore, type CaIndex } from './casync.js';
import { dirSize, dropCaches as dropPageCache, machineInfo, run, sampleLoad, timed, type Timed } from './measure.js';
import { renderMarkdown } from './report.js';
import type { BenchResults, ChunkerRun, DeliveryCase, ImageResult, ImportStats, Step, Target, Throughput } from './types.js';
import { vmdnDelivery, vmdnDisk } from './vmdn-store.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// compiled to dist/bench/run.js; sources in bench/
const repoRoot = path.resolve(here, existsSync(path.resolve(here, '../../package.json')) ? '../..' : '..');
/** the vmdn CLI under test: a private copy of the build, see snapshotVmdn() */
let VMDN = path.join(repoRoot, 'bin', 'vmdn.js');

const ALL_IMAGES = ['base', 'academic', 'academic2', 'database', 'turn'];
const CASES: { target: string; held: string[]; referenceCasyncMB: number }[] = [
  { target: 'academic', held: ['base'], referenceCasyncMB: 457 },
  { target: 'academic2', held: ['academic'], referenceCasyncMB: 150 },
  { target: 'database', held: ['base', 'academic'], referenceCasyncMB: 215 },
  { target: 'turn', held: ['base', 'academic', 'database'], referenceCasyncMB: 25.8 },
];
const DEFAULT_CHUNKERS = ['cdc:16k:64k:256k', 'cdc:8k:32k:128k', 'cdc:4k:16k:64k', 'fixed:64k', 'fixed:4k'];

const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const canonical = (spec: string) => formatChunkerSpec(parseChunkerSpec(spec));

const env = process.env;
const images = env.BENCH_IMAGES ? list(env.BENCH_IMAGES) : ALL_IMAGES;
for (const n of images) if (!ALL_IMAGES.includes(n)) throw new Error(`BENCH_IMAGES: unknown image ${n} (known: ${ALL_IMAGES.join(', ')})`);
images.sort((a, b) => ALL_IMAGES.indexOf(a) - ALL_IMAGES.indexOf(b));
const chunkerSpecs = (env.BENCH_CHUNKERS ? list(env.BENCH_CHUNKERS) : DEFAULT_CHUNKERS).map(canonical);
const defaultSpec = canonical(DEFAULT_CHUNKER_SPEC);
const budgetMinutes = Number(env.BENCH_BUDGET_MIN ?? 25);
const workDir = path.resolve(env.BENCH_WORKDIR ?? '/var/tmp/vmdn-bench');
const resultsDir = path.resolve(env.BENCH_RESULTS_DIR ?? path.join(repoRoot, 'bench', 'results'));
const wantDrop = env.BENCH_DROP_CACHES !== '0';
const parts = new Set(env.BENCH_PARTS ? list(env.BENCH_PARTS) : ['compare', 'chunkers']);
for (const p of parts) if (p !== 'compare' && p !== 'chunkers') throw new Error(`BENCH_PARTS: unknown part ${p} (compare, chunkers)`);

const t0 = Date.now();
const deadline = t0 + budgetMinutes * 60_000;
const problems: string[] = [];
let maxVmdnRss = 0;
let maxVmdnRssCmd = '';
let cachesDroppedEver = false;
let cachesDropFailed = false;

function log(msg: string): void {
  const s = Math.round((Date.now() - t0) / 1000);
  process.stderr.write(`[bench +${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}] ${msg}\n`);
}
function problem(msg: string): void {
  problems.push(msg);
  log(`PROBLEM: ${msg}`);
}
function dropCaches(): boolean {
  if (!wantDrop) return false;
  const ok = dropPageCache();
  if (ok) cachesDroppedEver = true;
  else cachesDropFailed = true;
  return ok;
}

function errorOf(t: Timed, json: unknown): string | undefined {
  if (t.timedOut) return 'timed out (killed)';
  if (t.exitCode === 0) return undefined;
  const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
  if (e) return `exit ${t.exitCode}: ${e.code ?? ''} ${e.message ?? ''}`.trim();
  const lines = t.stderrTail.trim().split('\n');
  const first = lines.find((l) => /error/i.test(l) && !/^\s+at /.test(l));
  return `exit ${t.exitCode}: ${first ? `${first.trim()} | ` : ''}${lines.slice(-3).join(' | ')}`;
}

function toStep(t: Timed, cachesDropped: boolean, json?: unknown): Step {
  const error = errorOf(t, json);
  return { cmd: t.cmd, ok: !error, seconds: t.seconds, maxRssBytes: t.maxRssBytes, exitCode: t.exitCode, cachesDropped, ...(error ? { error } : {}) };
}

async function tool(cmd: string, args: string[], opts: { drop?: boolean; timeoutMs?: number } = {}): Promise<Step> {
  const dropped = opts.drop ? dropCaches() : false;
  const t = await timed(cmd, args, { tmpDir: workDir, timeoutMs: opts.timeoutMs ?? 30 * 60_000 });
  const s = toStep(t, dropped);
  if (!s.ok) problem(`${t.cmd}: ${s.error}`);
  return s;
}

/** Runs `vmdn ARGS --json --no-progress` timed; returns the step and the parsed JSON document. */
async function vmdn<T = unknown>(args: string[], opts: { drop?: boolean; timeoutMs?: number; retry?: boolean } = {}): Promise<{ step: Step; json?: T }> {
  if (opts.retry) {
    const first = await vmdn<T>(args, { ...opts, retry: false });
    if (first.step.ok) return first;
    log(`retrying ${first.step.cmd}`);
    return vmdn<T>(args, { ...opts, retry: false });
  }
  const dropped = opts.drop ? dropCaches() : false;
  const t = await timed(process.execPath, [VMDN, ...args, '--json', '--no-progress'], { tmpDir: workDir, timeoutMs: opts.timeoutMs ?? 30 * 60_000 });
  let json: T | undefined;
  try {
    json = JSON.parse(t.stdout) as T;
  } catch {
    /* reported via the step's error */
  }
  const step = toStep(t, dropped, json);
  step.cmd = `vmdn ${args.join(' ')}`;
  if (step.ok && json === undefined) {
    step.ok = false;
    step.error = `no JSON on stdout: ${t.stdout.slice(0, 200)}`;
  }
  if (Number.isFinite(t.maxRssBytes) && t.maxRssBytes > maxVmdnRss) {
    maxVmdnRss = t.maxRssBytes;
    maxVmdnRssCmd = step.cmd;
  }
  if (!step.ok) problem(`${step.cmd}: ${step.error}`);
  return { step, json: step.ok ? json : undefined };
}

interface StatsJson {
  images: number;
  objects: number;
  objectBytes: number;
  storedBytes: number;
  logicalBytes: number;
  virtualBytes: number;
}
interface ImportJson {
  ref: string;
  manifest: string;
  stats: ImportStats;
  seconds: number;
}

const throughput = (bytesVirtual: number, allocated: number | undefined, seconds: number): Throughput => ({
  virtualMBps: bytesVirtual / 1e6 / seconds,
  allocatedMBps: allocated === undefined ? NaN : allocated / 1e6 / seconds,
});

async function rmrf(p: string): Promise<void> {
  await fsp.rm(p, { recursive: true, force: true, maxRetries: 3 });
}

function corpusDir(): string {
  const script = path.join(repoRoot, 'scripts', 'corpus.sh');
  let r = spawnSync(script, ['--check'], { encoding: 'utf8' });
  if (r.status !== 0) {
    log('corpus not built; building it with scripts/corpus.sh (needs root, about 6 minutes; not counted in the budget)');
    r = spawnSync(script, [], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (r.status !== 0) throw new Error(`scripts/corpus.sh failed (exit ${r.status})`);
  }
  const dir = r.stdout.trim().split('\n').pop()!;
  for (const n of images) for (const ext of ['raw', 'qcow2']) if (!existsSync(path.join(dir, `${n}.${ext}`))) throw new Error(`corpus ${dir} has no ${n}.${ext}`);
  return dir;
}

async function main(): Promise<void> {
  const startLoad = sampleLoad();
  log(`load at start: ${startLoad.uptime}`);
  const corpus = corpusDir();
  await rmrf(workDir);
  mkdirSync(workDir, { recursive: true });
  const machine = machineInfo(repoRoot);
  VMDN = await snapshotVmdn();
  log(`corpus ${corpus}; images ${images.join(', ')}; chunkers ${chunkerSpecs.join(', ')}; budget ${budgetMinutes} min; work dir ${workDir}`);
  if (machine.vmdn.dirtyFiles.length) log(`note: uncommitted changes in the tree under test: ${machine.vmdn.dirtyFiles.join(', ')}`);
  const restartedAt = Date.now();

  const store = path.join(workDir, 'vmdn-store');
  const rawStore = path.join(workDir, 'vmdn-store-raw');
  const casStore = path.join(workDir, 'casync-store');
  const caibx = (n: string) => path.join(workDir, `${n}.caibx`);
  const results: ImageResult[] = [];

  const res: BenchResults = {
    kind: 'vmdn.bench',
    version: 1,
    startedAt: new Date(t0).toISOString(),
    finishedAt: '',
    durationSeconds: 0,
    machine,
    load: { start: startLoad, end: startLoad },
    settings: { images, chunkers: chunkerSpecs, defaultChunker: defaultSpec, budgetMinutes, corpusDir: corpus, workDir, cachesDropped: false },
    images: results,
    delivery: [],
    chunkers: [],
    targets: [],
    maxVmdnRssBytes: 0,
    maxVmdnRssCommand: '',
    problems,
  };

  try {
    if (parts.has('compare')) {
      // 1. imports, in delivery order so the stores grow as they would in use
      for (const name of images) {
        const raw = path.join(corpus, `${name}.raw`);
        const qcow2 = path.join(corpus, `${name}.qcow2`);
        const virtualSize = (await fsp.stat(raw)).size;
        const qcow2FileBytes = (await fsp.stat(qcow2)).size;

        log(`${name}: casync make`);
        const cm = await tool('casync', ['make', `--store=${casStore}`, caibx(name), raw], { drop: true });
        const casAfter = await dirSize(casStore);
        log(`${name}: casync make ${cm.seconds} s, ${(cm.maxRssBytes / 1e6).toFixed(0)} MB RSS`);

        log(`${name}: vmdn import raw`);
        const vr = await vmdn<ImportJson>(['import', raw, '--name', name, '--store', rawStore], { drop: true });
        const rawAfter = await vmdnDisk(rawStore);
        log(`${name}: vmdn import raw ${vr.step.seconds} s, ${(vr.step.maxRssBytes / 1e6).toFixed(0)} MB RSS`);

        log(`${name}: vmdn import qcow2`);
        const vq = await vmdn<ImportJson>(['import', qcow2, '--name', name, '--store', store], { drop: true });
        const qAfter = await vmdnDisk(store);
        const st = await vmdn<StatsJson>(['stats', '--store', store], { retry: true });
        log(`${name}: vmdn import qcow2 ${vq.step.seconds} s, ${(vq.step.maxRssBytes / 1e6).toFixed(0)} MB RSS`);

        const rawAllocated = vr.json?.stats.allocated;
        results.push({
          name,
          virtualSize,
          qcow2FileBytes,
          casyncMake: { ...cm, storeBytesAfter: casAfter.fileBytes, indexBytes: (await fsp.stat(caibx(name)).catch(() => ({ size: 0 }))).size, throughput: throughput(virtualSize, rawAllocated, cm.seconds) },
          vmdnImportRaw: { ...vr.step, storeBytesAfter: rawAfter.total, stats: vr.json?.stats, throughput: throughput(virtualSize, rawAllocated, vr.step.seconds) },
          vmdnImportQcow2: {
            ...vq.step,
            storeBytesAfter: qAfter.total,
            storedBytesAfter: st.json?.storedBytes ?? NaN,
            stats: vq.json?.stats,
            throughput: throughput(virtualSize, vq.json?.stats.allocated, vq.step.seconds),
          },
          importRatioRaw: cm.ok && vr.step.ok ? cm.seconds / vr.step.seconds : NaN,
          importRatioQcow2: cm.ok && vq.step.ok ? cm.seconds / vq.step.seconds : NaN,
        });
      }

      // 2. store sizes
      log('store sizes');
      const casChunks = await scanCasyncStore(casStore).catch((e) => (problem(`casync store scan: ${e}`), new Map<string, number>()));
      const casDisk = await dirSize(casStore);
      const indexes = new Map<string, CaIndex>();
      for (const r of results) {
        try {
          const idx = await readCaibx(caibx(r.name));
          indexes.set(r.name, idx);
          r.caibx = checkIndex(idx, r.virtualSize, casChunks);
          if (!r.caibx.sizeMatches) problem(`${r.name}.caibx: chunks end at ${idx.blobSize}, image is ${r.virtualSize} bytes`);
          if (r.caibx.missingChunks) problem(`${r.name}.caibx: ${r.caibx.missingChunks} chunk ids have no .cacnk file in the casync store`);
        } catch (e) {
          problem(`parsing ${r.name}.caibx: ${(e as Error).message}`);
        }
      }
      const vStats = await vmdn<StatsJson>(['stats', '--store', store], { retry: true });
      const rStats = await vmdn<StatsJson>(['stats', '--store', rawStore], { retry: true });
      const firstChunk = casChunks.keys().next();
      const caIndexBytes = [...indexes.values()].reduce((n, i) => n + i.fileBytes, 0);
      const casChunkBytes = [...casChunks.values()].reduce((a, b) => a + b, 0);
      if (vStats.json) {
        res.stores = {
          vmdn: { ...pick(vStats.json), disk: await vmdnDisk(store) },
          vmdnRaw: rStats.json ? { objects: rStats.json.objects, storedBytes: rStats.json.storedBytes, disk: await vmdnDisk(rawStore) } : undefined,
          casync: {
            chunkFiles: casChunks.size,
            chunkBytes: casChunkBytes,
            indexBytes: caIndexBytes,
            total: casChunkBytes + caIndexBytes,
            diskBytes: casDisk.diskBytes,
            compression: firstChunk.done ? 'n/a' : await chunkCompression(casStore, firstChunk.value),
          },
        };
      }

      // 3. delivery cases
      log('delivery cases');
      for (const c of CASES) {
        if (![c.target, ...c.held].every((n) => images.includes(n))) continue;
        const d: DeliveryCase = { target: c.target, held: c.held, referenceCasyncMB: c.referenceCasyncMB };
        try {
          d.vmdn = vmdnDelivery(store, c.target, c.held);
        } catch (e) {
          problem(`vmdn delivery ${c.target}: ${(e as Error).message}`);
        }
        try {
          const t = indexes.get(c.target);
          const h = c.held.map((n) => indexes.get(n));
          if (!t || h.some((x) => !x)) throw new Error('index missing');
          d.casync = casyncDelivery(t, h as CaIndex[], casChunks);
        } catch (e) {
          problem(`casync delivery ${c.target}: ${(e as Error).message}`);
        }
        res.delivery.push(d);
      }

      // 4. exports
      for (const r of results) {
        const qcow2 = path.join(corpus, `${r.name}.qcow2`);
        const outV = path.join(workDir, `${r.name}.vmdn.raw`);
        const outC = path.join(workDir, `${r.name}.casync.raw`);
        const outQ = path.join(workDir, `${r.name}.qemu.raw`);
        log(`${r.name}: vmdn export`);
        const ve = await vmdn<{ bytesWritten: number }>(['export', r.name, outV, '--store', store], { drop: true });
        ve.step.syncSeconds = timeSync();
        let identical: boolean | null = null;
        let compare = 'not run (export failed)';
        if (ve.step.ok) {
          const cmp = run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', outV, qcow2]);
          identical = cmp.code === 0 ? true : cmp.code === 1 ? false : null;
          compare = (cmp.stdout + cmp.stderr).trim().split('\n').slice(-2).join(' ');
          if (identical !== true) problem(`${r.name}: vmdn export differs from the source qcow2 (qemu-img compare exit ${cmp.code}: ${compare})`);
        }
        await rmrf(outV);
        log(`${r.name}: casync extract`);
        const ce = await tool('casync', ['extract', `--store=${casStore}`, caibx(r.name), outC], { drop: true });
        ce.syncSeconds = timeSync();
        await rmrf(outC);
        log(`${r.name}: qemu-img convert`);
        const qe = await tool('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow2, outQ], { drop: true });
        qe.syncSeconds = timeSync();
        await rmrf(outQ);
        log(`${r.name}: export vmdn ${ve.step.seconds} s, casync ${ce.seconds} s, qemu-img ${qe.seconds} s; identical ${identical}`);
        r.export = {
          vmdn: { ...ve.step, bytesWritten: ve.json?.bytesWritten },
          casync: ce,
          qemuImg: qe,
          ratioQemuImg: ve.step.ok && qe.ok ? ve.step.seconds / qe.seconds : NaN,
          ratioCasync: ve.step.ok && ce.ok ? ve.step.seconds / ce.seconds : NaN,
          ratioQemuImgDurable: ve.step.ok && qe.ok ? (ve.step.seconds + (ve.step.syncSeconds ?? 0)) / (qe.seconds + (qe.syncSeconds ?? 0)) : NaN,
          identical,
          compare,
        };
      }
      await rmrf(rawStore);
      await rmrf(casStore);

    }

    // 5. chunker comparison (the default's row comes from the main store above)
    // without the compare part, guess ~40 s per image until the default's own run says better
    const mainImportSeconds = results.length ? results.reduce((n, r) => n + r.vmdnImportQcow2.seconds, 0) : 40 * images.length;
    // cheapest first, so that the budget cuts the costly ones (fixed:4k) rather than the rest
    const order = [...chunkerSpecs].sort((a, b) => estimateSeconds(a, mainImportSeconds) - estimateSeconds(b, mainImportSeconds));
    for (const spec of parts.has('chunkers') ? order : []) {
      if (spec === defaultSpec && results.length) {
        res.chunkers.push({
          spec,
          isDefault: true,
          status: results.every((r) => r.vmdnImportQcow2.ok) ? 'ok' : 'failed',
          importSeconds: mainImportSeconds,
          perImageSeconds: Object.fromEntries(results.map((r) => [r.name, r.vmdnImportQcow2.seconds])),
          maxRssBytes: Math.max(...results.map((r) => r.vmdnImportQcow2.maxRssBytes)),
          objects: res.stores?.vmdn.objects,
          storedBytes: res.stores?.vmdn.storedBytes,
          diskTotal: res.stores?.vmdn.disk.total,
          delivery: res.delivery.filter((d) => d.vmdn).map((d) => ({ target: d.target, total: d.vmdn!.total })),
          deliveryTotal: res.delivery.reduce((n, d) => n + (d.vmdn?.total ?? 0), 0),
        });
        continue;
      }
      res.chunkers.push({ ...(await chunkerRun(spec, mainImportSeconds, corpus)), isDefault: spec === defaultSpec });
    }
    // default first, then in the order asked
    res.chunkers.sort((a, b) => Number(b.isDefault) - Number(a.isDefault) || chunkerSpecs.indexOf(a.spec) - chunkerSpecs.indexOf(b.spec));
  } catch (e) {
    problem(`bench aborted: ${(e as Error).stack ?? e}`);
  } finally {
    res.maxVmdnRssBytes = maxVmdnRss;
    res.maxVmdnRssCommand = maxVmdnRssCmd;
    res.targets = targets(res);
    res.settings.cachesDropped = cachesDroppedEver && !cachesDropFailed;
    if (wantDrop && cachesDropFailed) problems.push('could not drop the page cache before every timed step (needs root): timings may favour whatever ran second');
    res.load.end = sampleLoad();
    res.finishedAt = new Date().toISOString();
    res.durationSeconds = (Date.now() - t0) / 1000;
    log(`load at end: ${res.load.end.uptime}`);
    await writeResults(res);
    await rmrf(workDir);
    log(`done in ${((Date.now() - restartedAt) / 60000).toFixed(1)} min (bench proper), ${(res.durationSeconds / 60).toFixed(1)} min total`);
  }
}

/**
 * Seconds a `sync` right after a step takes: the data the step left dirty in
 * the page cache. vmdn fsyncs its output before renaming it into place; a tool
 * that does not finishes sooner but leaves this much writing behind.
 */
function timeSync(): number {
  const s0 = performance.now();
  spawnSync('sync');
  return (performance.now() - s0) / 1000;
}

/**
 * Copies the built CLI (bin/vmdn.js, dist/src, package.json; node_modules and
 * the native build linked) into the work dir, so that a rebuild of dist/ by
 * someone else during the run cannot change or break the vmdn under test.
 */
async function snapshotVmdn(): Promise<string> {
  const dst = path.join(workDir, 'vmdn');
  const src = (p: string) => path.join(repoRoot, p);
  if (!existsSync(src('dist/src/cli/main.js'))) throw new Error('dist/src/cli/main.js missing: build first (npm run build)');
  await fsp.cp(src('dist/src'), path.join(dst, 'dist', 'src'), { recursive: true });
  // the bundled CLI after the modules: bin/vmdn.js takes it only when it is as new as them
  if (existsSync(src('dist/cli'))) await fsp.cp(src('dist/cli'), path.join(dst, 'dist', 'cli'), { recursive: true });
  await fsp.cp(src('bin'), path.join(dst, 'bin'), { recursive: true });
  await fsp.copyFile(src('package.json'), path.join(dst, 'package.json'));
  for (const d of ['node_modules', 'build']) if (existsSync(src(d))) await fsp.symlink(src(d), path.join(dst, d));
  return path.join(dst, 'bin', 'vmdn.js');
}

function pick(s: StatsJson) {
  return { images: s.images, objects: s.objects, objectBytes: s.objectBytes, storedBytes: s.storedBytes, logicalBytes: s.logicalBytes };
}

/** Rough cost of importing the corpus with a spec, from the default's import time; smaller chunks cost more per byte. */
function estimateSeconds(spec: string, mainImportSeconds: number): number {
  const p = parseChunkerSpec(spec);
  const factor = Math.sqrt(Math.max(1, (64 << 10) / p.avg));
  // object count drives cleanup too (fixed:4k makes ~1M files)
  return mainImportSeconds * factor * (p.avg <= 8 << 10 ? 2 : 1) + 20;
}

async function chunkerRun(spec: string, mainImportSeconds: number, corpus: string): Promise<ChunkerRun> {
  const est = estimateSeconds(spec, mainImportSeconds);
  const left = (deadline - Date.now()) / 1000;
  if (est > left) {
    log(`chunker ${spec}: skipped (estimated ${Math.round(est)} s, ${Math.round(left)} s left in the budget)`);
    return { spec, isDefault: false, status: 'skipped', reason: `time budget: estimated ${Math.round(est)} s, ${Math.max(0, Math.round(left))} s left of ${budgetMinutes} min` };
  }
  const s0 = Date.now();
  const store = path.join(workDir, `chunker-${spec.replace(/[^a-z0-9]+/gi, '-')}`);
  const out = await chunkerImports(spec, store, corpus);
  await rmrf(store);
  out.wallSeconds = (Date.now() - s0) / 1000;
  return out;
}

async function chunkerImports(spec: string, store: string, corpus: string): Promise<ChunkerRun> {
  const run: ChunkerRun = { spec, isDefault: false, status: 'ok' };
  const perImageSeconds: Record<string, number> = {};
  let maxRss = 0;
  try {
    for (const name of images) {
      const timeoutMs = Math.max(60_000, deadline - Date.now());
      log(`chunker ${spec}: import ${name}`);
      const r = await vmdn<ImportJson>(['import', path.join(corpus, `${name}.qcow2`), '--name', name, '--store', store, '--chunker', spec], { drop: true, timeoutMs });
      perImageSeconds[name] = r.step.seconds;
      maxRss = Math.max(maxRss, r.step.maxRssBytes);
      if (!r.step.ok) return { ...run, status: r.step.error?.startsWith('timed out') ? 'timed out' : 'failed', reason: r.step.error, perImageSeconds };
    }
    const st = await vmdn<StatsJson>(['stats', '--store', store], { retry: true });
    const disk = await vmdnDisk(store);
    const delivery: { target: string; total: number }[] = [];
    for (const c of CASES) {
      if (![c.target, ...c.held].every((n) => images.includes(n))) continue;
      delivery.push({ target: c.target, total: vmdnDelivery(store, c.target, c.held).total });
    }
    log(`chunker ${spec}: ${st.json?.objects} objects, ${((st.json?.storedBytes ?? NaN) / 1e6).toFixed(1)} MB stored, delivery sum ${(delivery.reduce((n, d) => n + d.total, 0) / 1e6).toFixed(1)} MB`);
    return {
      ...run,
      importSeconds: Object.values(perImageSeconds).reduce((a, b) => a + b, 0),
      perImageSeconds,
      maxRssBytes: maxRss,
      objects: st.json?.objects,
      storedBytes: st.json?.storedBytes,
      diskTotal: disk.total,
      delivery,
      deliveryTotal: delivery.reduce((n, d) => n + d.total, 0),
    };
  } catch (e) {
    problem(`chunker ${spec}: ${(e as Error).message}`);
    return { ...run, status: 'failed', reason: (e as Error).message, perImageSeconds };
  }
}

function targets(res: BenchResults): Target[] {
  const t: Target[] = [];
  const imgs = res.images;
  const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
  const perImage = (label: string, vals: number[], ok: (x: number) => boolean, threshold: string, total: number) => {
    const good = vals.filter((x) => Number.isFinite(x) && ok(x)).length;
    const finite = vals.filter(Number.isFinite);
    t.push({
      target: label,
      measured: finite.length ? `${good}/${vals.length} images; min ${f2(Math.min(...finite))}, max ${f2(Math.max(...finite))}, all images ${f2(total)}` : 'not measured',
      threshold,
      met: finite.length === vals.length && vals.length > 0 ? good === vals.length : null,
    });
  };
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  perImage('import speed, raw input: casync make time / vmdn import time', imgs.map((r) => r.importRatioRaw), (x) => x >= 1, '>= 1.0 per image',
    sum(imgs.map((r) => r.casyncMake.seconds)) / sum(imgs.map((r) => r.vmdnImportRaw.seconds)));
  perImage('import speed, qcow2 input: casync make time (raw) / vmdn import time (qcow2)', imgs.map((r) => r.importRatioQcow2), (x) => x >= 1, '>= 1.0 per image',
    sum(imgs.map((r) => r.casyncMake.seconds)) / sum(imgs.map((r) => r.vmdnImportQcow2.seconds)));
  const ex = imgs.filter((r) => r.export);
  perImage('export speed: vmdn export time / qemu-img convert time', ex.map((r) => r.export!.ratioQemuImg), (x) => x <= 1.5, '<= 1.5 per image',
    sum(ex.map((r) => r.export!.vmdn.seconds)) / sum(ex.map((r) => r.export!.qemuImg.seconds)));
  perImage('export speed until on disk: (vmdn export + sync) / (qemu-img convert + sync)', ex.map((r) => r.export!.ratioQemuImgDurable), (x) => x <= 1.5, '<= 1.5 per image',
    sum(ex.map((r) => r.export!.vmdn.seconds + (r.export!.vmdn.syncSeconds ?? 0))) / sum(ex.map((r) => r.export!.qemuImg.seconds + (r.export!.qemuImg.syncSeconds ?? 0))));
  t.push({
    target: 'peak RSS of every vmdn command',
    measured: res.maxVmdnRssBytes ? `${(res.maxVmdnRssBytes / 1e6).toFixed(0)} MB (${res.maxVmdnRssCommand.replace(/ --store \S+/, '').replace(/\S*\/([^/\s]+)/g, '$1')})` : 'not measured',
    threshold: '< 300 MB',
    met: res.maxVmdnRssBytes ? res.maxVmdnRssBytes < 300e6 : null,
  });
  t.push({
    target: 'exports bit-identical (qemu-img compare with the source)',
    measured: `${ex.filter((r) => r.export!.identical === true).length}/${ex.length} identical`,
    threshold: 'all',
    met: ex.length ? ex.every((r) => r.export!.identical === true) : null,
  });
  const s = res.stores;
  if (s) {
    t.push({
      target: 'store size on disk: vmdn objects + index.db vs casync chunks + .caibx',
      measured: `${(s.vmdn.disk.total / 1e6).toFixed(1)} MB vs ${(s.casync.total / 1e6).toFixed(1)} MB`,
      threshold: '<= casync',
      met: s.vmdn.disk.total <= s.casync.total,
    });
    t.push({
      target: 'store size, compressed data only: vmdn stored objects vs casync chunk files',
      measured: `${(s.vmdn.storedBytes / 1e6).toFixed(1)} MB vs ${(s.casync.chunkBytes / 1e6).toFixed(1)} MB`,
      threshold: '<= casync',
      met: s.vmdn.storedBytes <= s.casync.chunkBytes,
    });
  }
  for (const d of res.delivery) {
    t.push({
      target: `delivery ${d.target} given ${d.held.join('+')}: vmdn vs casync (chunks + index)`,
      measured: d.vmdn && d.casync ? `${(d.vmdn.total / 1e6).toFixed(1)} MB vs ${(d.casync.total / 1e6).toFixed(1)} MB` : 'not measured',
      threshold: '<= casync',
      met: d.vmdn && d.casync ? d.vmdn.total <= d.casync.total : null,
    });
  }
  return t;
}

async function writeResults(res: BenchResults): Promise<void> {
  mkdirSync(resultsDir, { recursive: true });
  const stamp = res.startedAt.slice(0, 16).replace(':', '-');
  const json = JSON.stringify(res, (_k, v) => (typeof v === 'bigint' ? v.toString() : typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n';
  const md = renderMarkdown(res);
  const prefix = parts.has('compare') ? '' : 'chunkers-';
  for (const base of [`${prefix}latest`, `${prefix}${stamp}`]) {
    // write then rename so a reader never sees half a file
    for (const [ext, body] of [['json', json], ['md', md]] as const) {
      const f = path.join(resultsDir, `${base}.${ext}`);
      await fsp.writeFile(`${f}.tmp`, body);
      await fsp.rename(`${f}.tmp`, f);
    }
  }
  log(`wrote ${path.join(resultsDir, `${prefix}latest.json`)}, ${prefix}latest.md and ${prefix}${stamp}.{json,md}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
