/**
 * bin/vmdn.js runs the bundled CLI (scripts/build-cli.mjs) only while it is at
 * least as new as the compiled modules, so a tsc-only rebuild never runs stale
 * code; and the bundle built by `npm run build` is the working CLI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { REPO } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';

const run = (bin: string, env: NodeJS.ProcessEnv = {}) => spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8', env: { ...process.env, ...env } });

test('bin/vmdn.js takes the bundle when it is as new as the modules, else the modules', () => {
  const t = tmpDir('vmdn-bundle-');
  try {
    fs.mkdirSync(path.join(t.dir, 'bin'));
    fs.copyFileSync(path.join(REPO, 'bin', 'vmdn.js'), path.join(t.dir, 'bin', 'vmdn.js'));
    const modules = path.join(t.dir, 'dist', 'src', 'cli', 'main.js');
    const bundle = path.join(t.dir, 'dist', 'cli', 'vmdn.js');
    for (const [f, said] of [[modules, 'modules'], [bundle, 'bundle']] as const) {
      fs.mkdirSync(path.dirname(f), { recursive: true });
      fs.writeFileSync(f, `console.log(${JSON.stringify(said)});\n`);
    }
    const bin = path.join(t.dir, 'bin', 'vmdn.js');
    const at = (f: string, s: number) => fs.utimesSync(f, s, s);
    at(modules, 1000);
    at(bundle, 2000);
    assert.equal(run(bin).stdout.trim(), 'bundle');
    assert.equal(run(bin, { VMDN_NO_BUNDLE: '1' }).stdout.trim(), 'modules');
    at(modules, 3000); // a tsc-only rebuild after the bundle
    assert.equal(run(bin).stdout.trim(), 'modules');
    fs.rmSync(bundle);
    assert.equal(run(bin).stdout.trim(), 'modules');
  } finally {
    t.cleanup();
  }
});

test('the bundle built by npm run build is the CLI, with its workers beside it', { skip: !fs.existsSync(path.join(REPO, 'dist', 'cli', 'vmdn.js')) && 'no bundle (npm run build makes it)' }, () => {
  for (const f of ['vmdn.js', 'codec-worker.js', 'pack-worker.js']) assert.ok(fs.existsSync(path.join(REPO, 'dist', 'cli', f)), f);
  const r = run(path.join(REPO, 'dist', 'cli', 'vmdn.js'));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\d+\.\d+\.\d+/);
});
