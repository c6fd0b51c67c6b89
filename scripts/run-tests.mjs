#!/usr/bin/env node
// Runs the compiled tests with node's built-in runner, two files at a time (VMDN_TEST_CONCURRENCY;
// most tests wait on qemu-img, mke2fs and I/O, so two share the 2 cores well): unit tests (*.test.js)
// first, then interop tests (*.integ.test.js, real qemu-img and friends).
//   node scripts/run-tests.mjs [unit|integ|all] [filter-substring]
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const [which = 'all', filter = ''] = process.argv.slice(2);
const walk = (d) => readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
const all = walk('dist/test').filter((f) => f.endsWith('.test.js') && f.includes(filter)).sort();
const integ = all.filter((f) => f.endsWith('.integ.test.js'));
const unit = all.filter((f) => !f.endsWith('.integ.test.js'));
const files = which === 'unit' ? unit : which === 'integ' ? integ : [...unit, ...integ];
if (files.length === 0) {
  console.error('no test files found (did the build run?)');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', `--test-concurrency=${process.env.VMDN_TEST_CONCURRENCY ?? 2}`, ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
