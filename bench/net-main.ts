/**
 * Standalone network benchmark: `node dist/bench/net-main.js`. Writes
 * bench/results/net-latest.{json,md}. BENCH_NET_WORKDIR (default
 * /var/tmp/vmdn-netbench) keeps the origin store and compressed qcow2s
 * between runs.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from './net-procs.js';
import { runNetBench } from './net.js';

const check = spawnSync('bash', [path.join(REPO, 'scripts', 'corpus.sh'), '--check'], { encoding: 'utf8' });
if (check.status !== 0) {
  console.error('shared corpus not built: run scripts/corpus.sh as root first');
  process.exit(1);
}
const workDir = path.resolve(process.env.BENCH_NET_WORKDIR ?? '/var/tmp/vmdn-netbench');
const { result, markdown } = await runNetBench({ corpusDir: check.stdout.trim(), workDir });
const dir = path.resolve(process.env.BENCH_RESULTS_DIR ?? path.join(REPO, 'bench', 'results'));
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(path.join(dir, 'net-latest.json'), JSON.stringify({ kind: 'vmdn.bench.net', version: 1, finishedAt: new Date().toISOString(), ...result }, null, 2) + '\n');
fs.writeFileSync(path.join(dir, 'net-latest.md'), markdown);
process.stdout.write(markdown);
