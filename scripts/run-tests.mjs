#!/usr/bin/env node
// Runs the compiled tests with node's built-in runner, two files at a time (VMDN_TEST_CONCURRENCY;
// most tests wait on qemu-img, mke2fs and I/O, so two share the 2 cores well).
//   node scripts/run-tests.mjs [unit|integ|all] [filter-substring] [--update-durations]
// Files start longest first, from the per-file times in test/durations.json: node's runner starts
// files in the order given, so a long corpus file started last would leave the other lane idle
// for its whole run. A file not in the list counts as long (new tests are often the slow ones).
// --update-durations also records this run's per-file times (sum of its top-level tests) into
// test/durations.json; commit it when new slow files come or times change much.
import { readdirSync, statSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';

const args = process.argv.slice(2);
const update = args.includes('--update-durations');
const [which = 'all', filter = ''] = args.filter((a) => !a.startsWith('--'));
const walk = (d) => readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
const all = walk('dist/test').filter((f) => f.endsWith('.test.js') && f.includes(filter)).sort();
const integ = all.filter((f) => f.endsWith('.integ.test.js'));
const unit = all.filter((f) => !f.endsWith('.integ.test.js'));
const chosen = which === 'unit' ? unit : which === 'integ' ? integ : [...unit, ...integ];
if (chosen.length === 0) {
  console.error('no test files found (did the build run?)');
  process.exit(1);
}

const DURATIONS = 'test/durations.json';
/** dist/test/a/b.integ.test.js -> test/a/b.integ.test.ts, the key in test/durations.json. */
const sourceOf = (f) => f.replace(/^dist\//, '').replace(/\.js$/, '.ts');
let known = {};
try {
  known = JSON.parse(readFileSync(DURATIONS, 'utf8')).seconds ?? {};
} catch {
  // no list yet: every file counts as long, so the order stays unit, integ, by name
}
const LONG = Math.max(0, ...Object.values(known)) + 1;
const secs = (f) => known[sourceOf(f)] ?? LONG;
// stable sort: equal times keep the unit-then-integ, by-name order
const files = chosen.map((f, i) => [f, i]).sort((a, b) => secs(b[0]) - secs(a[0]) || a[1] - b[1]).map(([f]) => f);

const record = join(tmpdir(), `vmdn-test-durations-${process.pid}.jsonl`);
const reporters = update
  ? ['--test-reporter', process.stdout.isTTY ? 'spec' : 'tap', '--test-reporter-destination', 'stdout',
     '--test-reporter', new URL('./test-durations-reporter.mjs', import.meta.url).href, '--test-reporter-destination', record]
  : [];
const r = spawnSync(process.execPath, ['--test', `--test-concurrency=${process.env.VMDN_TEST_CONCURRENCY ?? 2}`, ...reporters, ...files], { stdio: 'inherit' });

if (update) {
  const seen = {};
  for (const line of readFileSync(record, 'utf8').split('\n').filter(Boolean)) {
    const { file, seconds } = JSON.parse(line);
    const key = sourceOf(file.slice(file.indexOf('dist/test/')));
    seen[key] = Math.round(((seen[key] ?? 0) + seconds) * 10) / 10;
  }
  rmSync(record, { force: true });
  const merged = Object.fromEntries(Object.entries({ ...known, ...seen }).sort(([a], [b]) => a.localeCompare(b)));
  writeFileSync(DURATIONS, JSON.stringify({ note: 'seconds per test file (sum of its top-level tests) on the CI machine, two files at a time; scripts/run-tests.mjs starts the longest first. Update: node scripts/run-tests.mjs all --update-durations', seconds: merged }, null, 1) + '\n');
  console.error(`[run-tests] ${Object.keys(seen).length} file times recorded in ${DURATIONS}`);
}
process.exit(r.status ?? 1);
