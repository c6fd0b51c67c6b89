/**
 * SIGKILL `vmdn pull` at random points while objects arrive in batch groups:
 * the cache must stay consistent (`vmdn verify` clean), and a re-run must
 * finish the pull from what the killed ones kept, bit for bit.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { CLI, vmdnOk, qemuCompare } from '../helpers/cli.js';
import { startServe, type Served } from '../helpers/serve.js';
import { writeRaw, prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { indexedObjects } from '../helpers/store-objects.js';
import { mulberry32 } from '../helpers/rng.js';

const MiB = 1024 * 1024;
const SEED = Number(process.env.VMDN_KILL_SEED ?? Date.now() % 100000);

/** Start a pull, SIGKILL it once the cache holds `files` objects (mid-download, however slow the machine); resolves with how it ended. */
function pullKilledAt(url: string, cache: string, out: string, files: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'pull', url, 'victim', out, '--cache', cache, '--json', '--no-packs'], { stdio: 'ignore' });
    const timer = setInterval(() => {
      if (indexedObjects(cache) >= files) child.kill('SIGKILL');
    }, 5);
    child.on('exit', (code, signal) => {
      clearInterval(timer);
      resolve(signal ?? `exit ${code}`);
    });
  });
}

describe(`SIGKILL during pull (seed ${SEED}, VMDN_KILL_SEED to replay)`, () => {
  let t: ReturnType<typeof tmpDir>;
  let image: string;
  let served: Served;
  before(async () => {
    t = tmpDir();
    image = path.join(t.dir, 'victim.raw');
    // 64 MiB of incompressible data: a few batches' worth, long enough to be killed mid-way
    writeRaw(image, 96 * MiB, [
      { offset: 0, data: prng(SEED + 1, 32 * MiB) },
      { offset: 48 * MiB, data: prng(SEED + 2, 32 * MiB) },
    ]);
    const origin = path.join(t.dir, 'origin');
    vmdnOk(origin, ['import', image, '--name', 'victim']);
    served = await startServe(origin);
  });
  after(async () => {
    await served?.stop();
    t.cleanup();
  });

  it('a re-run after each kill finishes the pull from the kept objects and verify is clean', { timeout: 300_000 }, async () => {
    const rand = mulberry32(SEED);
    const cache = path.join(t.dir, 'cache');
    const out = path.join(t.dir, 'out.raw');
    const outcomes: string[] = [];
    const kept: number[] = [];
    for (let i = 0; i < 4; i++) {
      // kill points spread over the download: each run keeps a few hundred more objects
      outcomes.push(await pullKilledAt(served.url, cache, out, Math.floor((i + rand()) * 350)));
      kept.push(indexedObjects(cache));
      const v = vmdnOk(cache, ['verify']);
      assert.equal(v.ok, true, JSON.stringify(v.problems));
    }
    const r = vmdnOk(cache, ['pull', served.url, 'victim', out, '--cache', cache, '--no-packs']);
    assert.equal(r.objects.cached + r.objects.downloaded, r.objects.total);
    // the killed runs' objects were kept and not downloaded again
    assert.ok(r.objects.cached > 0 && r.objects.downloaded < r.objects.total, JSON.stringify({ objects: r.objects, kept }));
    assert.ok(qemuCompare(image, out).identical);
    const v = vmdnOk(cache, ['verify']);
    assert.equal(v.ok, true, JSON.stringify(v.problems));
    assert.deepEqual(v.problems, []);
    console.log(`kill outcomes: ${outcomes.join(', ')}; objects after each: ${kept.join(', ')}; last pull: ${JSON.stringify(r.objects)}`);
  });
});
