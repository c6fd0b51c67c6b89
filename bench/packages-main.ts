/**
 * Re-run only the packages section from the stores and timings a files
 * section left behind (BENCH_FILES_WORKDIR, bench/results/latest.json):
 *   node dist/bench/packages-main.js
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO } from './net-procs.js';
import { benchPackages } from './packages.js';
import type { FilesBench } from './files.js';

const latest = path.join(REPO, 'bench', 'results', 'latest.json');
const json = JSON.parse(fs.readFileSync(latest, 'utf8')) as { files?: FilesBench };
if (!json.files) throw new Error(`${latest} has no files section: run BENCH_SECTIONS=files npm run bench first`);
const corpus = spawnSync('bash', [path.join(REPO, 'scripts', 'corpus.sh'), '--check'], { encoding: 'utf8' }).stdout.trim();
const r = await benchPackages({ corpusDir: corpus, workDir: process.env.BENCH_FILES_WORKDIR ?? '/var/tmp/vmdn-filesbench', files: json.files, log: (s) => console.error(`[packages] ${s}`) });
fs.writeFileSync(path.join(REPO, 'bench', 'results', 'packages.md'), r.markdown + '\n');
fs.writeFileSync(path.join(REPO, 'bench', 'results', 'packages.json'), JSON.stringify(r.result, null, 2) + '\n');
console.log(r.markdown);
