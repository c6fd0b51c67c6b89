/**
 * Run only the on-demand section: `node dist/bench/ondemand-main.js` (as root).
 * Writes bench/results/ondemand-latest.{json,md} (BENCH_RESULTS_DIR) and prints the Markdown.
 * Environment (also read by `BENCH_SECTIONS=ondemand npm run bench`):
 *   BENCH_OD_QUICK=1        loopback and 1 Gbit/s only, no boots: a few minutes, to try it out
 *   BENCH_OD_LINKS          comma list of lo,1gbit,100mbit (default all three)
 *   BENCH_OD_BOOTS=0|1      boots on or off (default on, off in quick mode)
 *   BENCH_OD_PARTS          comma list of pulls,nbd,boots (default all)
 *   BENCH_OD_BOOT_TIMEOUT   seconds a boot may take to reach login: (default 300)
 *   BENCH_OD_ROUNDS         rounds of the timed pulls and NBD reads, alternating vmdn and its anchor (default 3; the median is shown)
 *   BENCH_OD_WORKDIR        kept between runs: origin store, base.raw.zst, casync store, kernel (default /var/tmp/vmdn-odbench)
 *   BENCH_DROP_CACHES=0     keep the page cache between timed steps
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO } from './net-procs.js';
import { onDemandOptsFromEnv, runOnDemandBench } from './ondemand.js';

const check = spawnSync('bash', [path.join(REPO, 'scripts', 'corpus.sh'), '--check'], { encoding: 'utf8' });
if (check.status !== 0) {
  console.error('shared corpus not built: run scripts/corpus.sh as root first');
  process.exit(1);
}
const { result, markdown } = await runOnDemandBench(onDemandOptsFromEnv(check.stdout.trim(), process.env));
const dir = path.resolve(process.env.BENCH_RESULTS_DIR ?? path.join(REPO, 'bench', 'results'));
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(path.join(dir, 'ondemand-latest.json'), JSON.stringify({ kind: 'vmdn.bench.ondemand', version: 1, ...result }, null, 2) + '\n');
fs.writeFileSync(path.join(dir, 'ondemand-latest.md'), markdown);
process.stdout.write(markdown);
