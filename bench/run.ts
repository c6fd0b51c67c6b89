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
import { machineInfo, sampleLoad } from './measure.js';
import { renderMarkdown } from './report.js';
import { runChunkers } from './run-chunkers.js';
import { runCompare } from './run-compare.js';
import { runSettingsFromEnv } from './run-settings.js';
import { rmrf, StepRunner } from './run-steps.js';
import { targets } from './run-targets.js';
import type { BenchResults } from './types.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// compiled to dist/bench/run.js; sources in bench/
const repoRoot = path.resolve(here, existsSync(path.resolve(here, '../../package.json')) ? '../..' : '..');
const settings = runSettingsFromEnv(process.env, repoRoot);
const { images, chunkerSpecs, defaultSpec, budgetMinutes, workDir, resultsDir, wantDrop, parts } = settings;

const t0 = Date.now();
const deadline = t0 + budgetMinutes * 60_000;
/** the vmdn CLI under test: a private copy of the build, see snapshotVmdn() */
const steps = new StepRunner(t0, workDir, wantDrop, path.join(repoRoot, 'bin', 'vmdn.js'));
const { log, problem, problems } = steps;

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
  steps.vmdnCli = await snapshotVmdn();
  log(`corpus ${corpus}; images ${images.join(', ')}; chunkers ${chunkerSpecs.join(', ')}; budget ${budgetMinutes} min; work dir ${workDir}`);
  if (machine.vmdn.dirtyFiles.length) log(`note: uncommitted changes in the tree under test: ${machine.vmdn.dirtyFiles.join(', ')}`);
  const restartedAt = Date.now();

  const res: BenchResults = {
    kind: 'vmdn.bench',
    version: 1,
    startedAt: new Date(t0).toISOString(),
    finishedAt: '',
    durationSeconds: 0,
    machine,
    load: { start: startLoad, end: startLoad },
    settings: { images, chunkers: chunkerSpecs, defaultChunker: defaultSpec, budgetMinutes, corpusDir: corpus, workDir, cachesDropped: false },
    images: [],
    delivery: [],
    chunkers: [],
    targets: [],
    maxVmdnRssBytes: 0,
    maxVmdnRssCommand: '',
    problems,
  };

  try {
    const bench = { steps, settings, corpus, deadline };
    if (parts.has('compare')) await runCompare(bench, res);
    // the chunker comparison (the default's row comes from the main store above)
    if (parts.has('chunkers')) await runChunkers(bench, res);
  } catch (e) {
    problem(`bench aborted: ${(e as Error).stack ?? e}`);
  } finally {
    res.maxVmdnRssBytes = steps.maxVmdnRss;
    res.maxVmdnRssCommand = steps.maxVmdnRssCmd;
    res.targets = targets(res);
    res.settings.cachesDropped = steps.cachesDroppedEver && !steps.cachesDropFailed;
    if (wantDrop && steps.cachesDropFailed) problems.push('could not drop the page cache before every timed step (needs root): timings may favour whatever ran second');
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
