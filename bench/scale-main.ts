/**
 * Run only the scale section: `node dist/bench/scale-main.js` (as root: namespaces, tc, Ceph).
 * Writes bench/results/scale-latest.{json,md} (BENCH_RESULTS_DIR) and prints the Markdown;
 * BENCH_SCALE_* settings in bench/scale.ts (also read by `BENCH_SECTIONS=scale npm run bench`).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from './net-procs.js';
import { runScaleBench, scaleOptsFromEnv } from './scale.js';

const check = spawnSync('bash', [path.join(REPO, 'scripts', 'corpus.sh'), '--check'], { encoding: 'utf8' });
if (check.status !== 0) {
  console.error('shared corpus not built: run scripts/corpus.sh as root first');
  process.exit(1);
}
const { result, markdown } = await runScaleBench(scaleOptsFromEnv(check.stdout.trim(), process.env));
const dir = path.resolve(process.env.BENCH_RESULTS_DIR ?? path.join(REPO, 'bench', 'results'));
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(path.join(dir, 'scale-latest.json.tmp'), JSON.stringify({ kind: 'vmdn.bench.scale', version: 1, ...result }, null, 2) + '\n');
fs.renameSync(path.join(dir, 'scale-latest.json.tmp'), path.join(dir, 'scale-latest.json'));
fs.writeFileSync(path.join(dir, 'scale-latest.md.tmp'), markdown);
fs.renameSync(path.join(dir, 'scale-latest.md.tmp'), path.join(dir, 'scale-latest.md'));
process.stdout.write(markdown);
