#!/usr/bin/env node
// `npm run fuzz`: every parser's seeded fuzz target at 10,000 cases or more (the same
// tests `npm test` runs at a CI-sized count), one after another, with the time each took.
//   node scripts/fuzz.mjs [--runs N] [--seed S] [--only SUBSTRING]
//   VMDN_FUZZ_RUNS=N and VMDN_FUZZ_SEED=S do the same. The seed is printed first and with
//   any failure; rerun with it (and --only) to reproduce one.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** Target -> compiled test file under dist/test, and the tests in it that are the fuzz target. */
const TARGETS = [
  { name: 'qcow2', file: 'container/qcow2-fuzz.integ.test.js' },
  { name: 'vmdk (sparse, descriptor, streamOptimized)', file: 'container/vmdk-fuzz.integ.test.js' },
  { name: 'vhd, vdi', file: 'container/vhd-vdi-fuzz.integ.test.js' },
  { name: 'vhdx', file: 'container/vhdx-fuzz.integ.test.js' },
  { name: 'ova (tar member list, OVF)', file: 'container/ova-fuzz.test.js' },
  { name: 'MBR/GPT, FAT', file: 'disk/layout-fuzz.integ.test.js', pattern: 'seeded mutations' },
  { name: 'ext4', file: 'fs/ext4-fuzz.integ.test.js' },
  { name: 'dpkg status, md5sums, sources lists, Packages, Release', file: 'os/archive-fuzz.test.js' },
  { name: '.deb data tars', file: 'os/deb-tar-fuzz.test.js', pattern: 'mutants' },
  { name: 'package tars (chunk cuts)', file: 'strategy/packages-tar.test.js', pattern: '^fuzz' },
  { name: 'manifests', file: 'strategy/manifest.test.js', pattern: '^fuzz' },
  { name: 'file trees', file: 'strategy/files-tree.test.js', pattern: '^fuzz' },
  { name: 'package trees, .deb index objects', file: 'strategy/packages-tree.test.js', pattern: '^fuzz' },
  { name: 'boot profiles', file: 'nbd/profile.test.js', pattern: '^fuzz' },
  { name: 'packs', file: 'net/pack.test.js', pattern: 'seeded mutations' },
  { name: 'HTTP request bodies', file: 'net/request-fuzz.test.js', pattern: '^mutated' },
  { name: 'NBD requests (handshake options, commands)', file: 'nbd/request-fuzz.test.js' },
];

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const runs = Number(opt('--runs') ?? process.env.VMDN_FUZZ_RUNS ?? 10_000);
const seed = Number(opt('--seed') ?? process.env.VMDN_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
const only = opt('--only');
if (!Number.isSafeInteger(runs) || runs < 1) {
  console.error(`--runs ${runs}: give a positive count`);
  process.exit(2);
}
const targets = TARGETS.filter((t) => !only || t.name.includes(only) || t.file.includes(only));
const missing = targets.filter((t) => !existsSync(join('dist/test', t.file)));
if (missing.length) {
  console.error(`not built: ${missing.map((t) => t.file).join(', ')} (run npm run build)`);
  process.exit(1);
}

console.log(`fuzz: ${targets.length} targets, ${runs} cases each, seed ${seed} (replay: VMDN_FUZZ_SEED=${seed} or --seed ${seed})`);
const hasTime = existsSync('/usr/bin/time');
const rows = [];
let failed = 0;
for (const t of targets) {
  const nodeArgs = ['--test', '--test-concurrency=1', ...(t.pattern ? [`--test-name-pattern=${t.pattern}`] : []), join('dist/test', t.file)];
  const cmd = hasTime ? '/usr/bin/time' : process.execPath;
  const cmdArgs = hasTime ? ['-f', 'VMDN_FUZZ_CPU %U %S', process.execPath, ...nodeArgs] : nodeArgs;
  const t0 = Date.now();
  const r = spawnSync(cmd, cmdArgs, { env: { ...process.env, VMDN_FUZZ_CASES: String(runs), VMDN_FUZZ_SEED: String(seed) }, encoding: 'utf8', maxBuffer: 256 << 20 });
  const wall = (Date.now() - t0) / 1000;
  const cpu = /VMDN_FUZZ_CPU ([\d.]+) ([\d.]+)/.exec(r.stderr ?? '');
  const cpuS = cpu ? Number(cpu[1]) + Number(cpu[2]) : undefined;
  const out = `${r.stdout ?? ''}`;
  const passed = r.status === 0 && /^# pass [1-9]/m.test(out) && /^# fail 0/m.test(out);
  const ran = Number(/^# pass (\d+)/m.exec(out)?.[1] ?? 0);
  rows.push({ name: t.name, ok: passed, tests: ran, wall, cpu: cpuS });
  console.log(`${passed ? 'ok  ' : 'FAIL'} ${t.name}: ${runs} cases per parser in ${ran} test(s), ${wall.toFixed(1)} s wall${cpuS === undefined ? '' : `, ${cpuS.toFixed(1)} s CPU`}`);
  if (!passed) {
    failed++;
    console.log(out.split('\n').filter((l) => /not ok|seed|case|error|Error|expected|actual/i.test(l)).slice(0, 60).join('\n'));
    console.log(`  reproduce: VMDN_FUZZ_SEED=${seed} VMDN_FUZZ_CASES=${runs} node ${nodeArgs.join(' ')}`);
  }
}
const total = rows.reduce((a, r) => a + r.wall, 0);
console.log(`fuzz: ${rows.length - failed}/${rows.length} targets passed in ${total.toFixed(0)} s (seed ${seed})`);
process.exit(failed ? 1 : 0);
