/**
 * `npm run bench`: one run, one report. Runs the storage benchmark
 * (bench/run.ts: vmdn vs casync and qemu-img; it writes latest.{json,md}),
 * then the network benchmark (bench/net.ts) and the inside-images benchmark
 * (bench/inspect.ts), and appends their sections to the same report.
 * then the file-aware dedup section (bench/files.ts, which also imports with the
 * packages strategy) and the packages section computed from its stores (bench/packages.ts),
 * then the per-container-format section (bench/formats.ts),
 * then the on-demand section (bench/ondemand.ts: netns + tc links, pulls vs curl|zstd and casync,
 * NBD, boots; BENCH_OD_* settings in bench/ondemand-main.ts).
 * then the portal section (bench/portal.ts: catalog search over a generated 10,000-image catalog; BENCH_PORTAL_* settings there).
 * then the trust section (bench/trust.ts: signature and token overhead per request, pulls with/without --trust,
 * `vmdn serve` under 500 keep-alive clients and a slowloris share; BENCH_TRUST_* settings there).
 * then the scale section (bench/scale.ts: S3 store vs local store on a real Ceph RGW, fan-out to 1-16 sites
 * with and without P2P on loopback and through one tc-limited namespace per site; BENCH_SCALE_* settings there;
 * `node dist/bench/scale-main.js` runs it alone into scale-latest.{json,md}).
 *   BENCH_FORMATS_ROUNDS  rounds of each format's export and qemu-img convert, alternating (default 3; median shown)
 *   BENCH_SECTIONS  storage,net,inspect,files,formats,ondemand,portal,trust,scale (default all nine; files includes packages)
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { replaceSection } from './report.js';
import os from 'node:os';
import path from 'node:path';
import { REPO } from './net-procs.js';
import { runNetBench } from './net.js';
import { benchInspect } from './inspect.js';
import { benchFiles } from './files.js';
import { benchPackages } from './packages.js';
import { onDemandOptsFromEnv, runOnDemandBench } from './ondemand.js';
import { benchFormats } from './formats.js';
import { benchPortal } from './portal.js';
import { runTrustBench, trustOptsFromEnv } from './trust.js';
import { runScaleBench, scaleOptsFromEnv } from './scale.js';

const sections = new Set((process.env.BENCH_SECTIONS ?? 'storage,net,inspect,files,formats,ondemand,portal,trust,scale').split(',').map((s) => s.trim()));
const resultsDir = path.join(REPO, 'bench', 'results');
const latestJson = path.join(resultsDir, 'latest.json');
const latestMd = path.join(resultsDir, 'latest.md');

function corpus(): string {
  const c = spawnSync('bash', [path.join(REPO, 'scripts', 'corpus.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (c.status !== 0) throw new Error('the shared corpus could not be built (scripts/corpus.sh needs root)');
  return c.stdout.trim();
}

/** Add a section to the report the storage run wrote (or start one if it did not run). */
function append(key: string, value: unknown, markdown: string): void {
  fs.mkdirSync(resultsDir, { recursive: true });
  const json = fs.existsSync(latestJson) ? JSON.parse(fs.readFileSync(latestJson, 'utf8')) : { kind: 'vmdn.bench', version: 1 };
  json[key] = value;
  fs.writeFileSync(`${latestJson}.tmp`, JSON.stringify(json, null, 2) + '\n');
  fs.renameSync(`${latestJson}.tmp`, latestJson);
  const md = fs.existsSync(latestMd) ? fs.readFileSync(latestMd, 'utf8') : '# vmdn benchmark\n';
  fs.writeFileSync(`${latestMd}.tmp`, replaceSection(md, markdown.trim()));
  fs.renameSync(`${latestMd}.tmp`, latestMd);
}

async function main(): Promise<void> {
  const dir = corpus();
  if (sections.has('storage')) {
    const r = spawnSync(process.execPath, [path.join(REPO, 'dist', 'bench', 'run.js')], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`storage benchmark failed (exit ${r.status})`);
  }
  if (sections.has('net')) {
    const { result, markdown } = await runNetBench({ corpusDir: dir, workDir: process.env.BENCH_NET_WORKDIR ?? '/var/tmp/vmdn-netbench', log: (s) => console.error(s) });
    append('network', result, markdown);
  }
  if (sections.has('inspect')) {
    const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmdn-bench-inspect-'));
    try {
      const r = await benchInspect({ corpusDir: dir, repoRoot: REPO, tmpDir });
      append('inspect', { ...r, markdown: undefined }, r.markdown);
    } finally {
      fs.rmSync(tmpDir, { recursive: true, force: true });
    }
  }
  if (sections.has('files')) {
    const r = await benchFiles({ corpusDir: dir, workDir: process.env.BENCH_FILES_WORKDIR ?? '/var/tmp/vmdn-filesbench', log: (s) => console.error(`[files] ${s}`) });
    append('files', r.result, r.markdown);
    const p = await benchPackages({ corpusDir: dir, workDir: process.env.BENCH_FILES_WORKDIR ?? '/var/tmp/vmdn-filesbench', files: r.result, log: (s) => console.error(`[packages] ${s}`) });
    append('packages', p.result, p.markdown);
  }
  if (sections.has('formats')) {
    const r = await benchFormats({ corpusDir: dir, workDir: process.env.BENCH_FORMATS_WORKDIR ?? '/var/tmp/vmdn-formatsbench', rounds: Number(process.env.BENCH_FORMATS_ROUNDS ?? 3), log: (s) => console.error(`[formats] ${s}`) });
    append('formats', r.result, r.markdown);
  }
  if (sections.has('portal')) {
    const env = (k: string, d: number) => Number(process.env[`BENCH_PORTAL_${k}`] ?? d);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmdn-bench-portal-'));
    try {
      const r = benchPortal(path.join(dir, 'portal.db'), { images: env('IMAGES', 10_000), bases: env('BASES', 100), pathsPerBase: env('PATHS', 20_000), seed: env('SEED', 15) });
      console.error(r.markdown);
      append('portal', r.result, r.markdown);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  if (sections.has('ondemand')) {
    const { result, markdown } = await runOnDemandBench(onDemandOptsFromEnv(dir, process.env));
    append('ondemand', result, markdown);
  }
  if (sections.has('trust')) {
    const { result, markdown } = await runTrustBench(trustOptsFromEnv(process.env), (s) => console.error(s));
    append('trust', result, markdown);
  }
  if (sections.has('scale')) {
    const { result, markdown } = await runScaleBench(scaleOptsFromEnv(dir, process.env));
    append('scale', result, markdown);
  }
  console.log(`report: ${latestMd}`);
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
