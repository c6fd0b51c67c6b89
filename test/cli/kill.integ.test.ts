/**
 * SIGKILL `vmdn import` at random points: the store must stay consistent, a
 * re-run must succeed, and `vmdn verify` must be clean.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CLI, vmdnOk, qemuCompare } from '../helpers/cli.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { writeRaw, prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { mulberry32 } from '../helpers/rng.js';

const MiB = 1024 * 1024;
const SEED = Number(process.env.VMDN_KILL_SEED ?? Date.now() % 100000);

/** Start an import, SIGKILL it after `ms`; resolves with how it ended. */
function importKilledAfter(store: string, image: string, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'import', image, '--name', 'victim', '--store', store, '--json'], { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(signal ?? `exit ${code}`);
    });
  });
}

describe(`SIGKILL during import (seed ${SEED}, VMDN_KILL_SEED to replay)`, () => {
  let t: ReturnType<typeof tmpDir>;
  let image: string;
  before(() => {
    t = tmpDir();
    image = path.join(t.dir, 'victim.raw');
    // 96 MiB of incompressible data: long enough that random kill points land mid-import
    writeRaw(image, 160 * MiB, [
      { offset: 0, data: prng(SEED + 1, 48 * MiB) },
      { offset: 64 * MiB, data: prng(SEED + 2, 48 * MiB) },
    ]);
  });
  after(() => t.cleanup());

  it('a re-run after each kill succeeds and verify is clean', async () => {
    const rand = mulberry32(SEED);
    const store = path.join(t.dir, 'store');
    await (await LocalStore.open(store)).close(); // create the store first so kills are not all during start-up
    const outcomes: string[] = [];
    for (let i = 0; i < 6; i++) {
      outcomes.push(await importKilledAfter(store, image, Math.floor(150 + rand() * 2500)));
      // after a kill the store is consistent: names only point at complete images
      const v = vmdnOk(store, ['verify']);
      assert.equal(v.ok, true, JSON.stringify(v.problems));
    }
    assert.ok(outcomes.includes('SIGKILL'), `no run was killed: ${outcomes.join(', ')}`);
    const r = vmdnOk(store, ['import', image, '--name', 'victim']);
    assert.equal(r.ref, 'victim:latest');
    const out = path.join(t.dir, 'out.raw');
    vmdnOk(store, ['export', 'victim', out]);
    assert.ok(qemuCompare(image, out).identical);
    const gc = vmdnOk(store, ['gc']);
    assert.equal(fs.readdirSync(path.join(store, 'tmp')).length, 0, 'gc left temp files');
    const v = vmdnOk(store, ['verify']);
    assert.equal(v.ok, true);
    assert.deepEqual(v.problems, [], `after gc (${JSON.stringify(gc)})`);
    console.log(`kill outcomes: ${outcomes.join(', ')}`);
  });
});
