/**
 * gc against concurrent writers, all real `vmdn` processes: gc runs in a loop
 * while imports and pulls (from a `vmdn serve` origin) write into the same
 * store, deduplicating against objects that no image names (exactly what gc
 * deletes). Afterwards every writer has succeeded, verify is clean and every
 * image exports identical to its source.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { vmdnOk, vmdnAsync as cli, vmdnStart as start, qemuCompare, type Run } from '../helpers/cli.js';
import { prng, sampleDisk } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;

/** A variant of a 64 MiB sample disk: most chunks shared with the base, 1 MiB of its own. */
function variant(file: string, base: string, seed: number): void {
  fs.copyFileSync(base, file);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, prng(seed, MiB), 0, MiB, 20 * MiB);
  fs.closeSync(fd);
}

describe('gc in a loop while imports and pulls write into the same store', () => {
  let t: ReturnType<typeof tmpDir>;
  let serve: ChildProcess | undefined;
  let url = '';
  const img = (n: string) => path.join(t.dir, `${n}.raw`);
  const sources = new Map<string, string>(); // image ref -> source file

  before(async () => {
    t = tmpDir('vmdn-gc-');
    sampleDisk(img('base'), 5);
    for (let i = 0; i < 4; i++) variant(img(`imp${i}`), img('base'), 100 + i);
    sampleDisk(img('pbase'), 7);
    for (let i = 0; i < 2; i++) variant(img(`pul${i}`), img('pbase'), 200 + i);
    const origin = path.join(t.dir, 'origin');
    for (let i = 0; i < 2; i++) vmdnOk(origin, ['import', img(`pul${i}`), '--name', `pul${i}`]);
    const s = start(origin, ['serve', '--listen', '127.0.0.1:0']);
    serve = s.child;
    url = await new Promise<string>((resolve, reject) => {
      let out = '';
      s.child.stdout!.on('data', (b) => {
        out += b;
        const m = /"url":\s*"([^"]+)"/.exec(out);
        if (m) resolve(m[1]!);
      });
      s.done.then((r) => reject(new Error(`serve exited ${r.code}: ${r.stderr}`)));
    });
  });

  after(() => {
    serve?.kill('SIGTERM');
    t.cleanup();
  });

  it('every writer succeeds; verify is clean; every image exports identical', async () => {
    const store = path.join(t.dir, 'store');
    for (let round = 0; round < 2; round++) {
      // objects of the images, left unreferenced: the writers below dedup against exactly what gc deletes
      vmdnOk(store, ['import', img('base'), '--name', 'seed']);
      vmdnOk(store, ['pull', url, 'pul0', path.join(t.dir, 'warm.raw')]);
      const names: string[] = vmdnOk(store, ['images']).images.map((i: { ref: string }) => i.ref);
      vmdnOk(store, ['rm', ...names]);
      sources.clear();

      let writing = true;
      const gcRuns: Run[] = [];
      const gcLoop = (async () => {
        while (writing) gcRuns.push(await cli(store, ['gc']));
      })();
      const writers: Array<Promise<Run>> = [];
      for (let i = 0; i < 4; i++) {
        sources.set(`imp${i}:r${round}`, img(`imp${i}`));
        writers.push(cli(store, ['import', img(`imp${i}`), '--name', `imp${i}:r${round}`]));
      }
      for (let i = 0; i < 2; i++) {
        sources.set(`pul${i}:r${round}`, img(`pul${i}`));
        // pull names the image pul<i>:latest in the store; the output file is what we compare
        writers.push(cli(store, ['pull', url, `pul${i}`, path.join(t.dir, `pulled${i}-${round}.raw`)]));
      }
      const runs = await Promise.all(writers);
      writing = false;
      await gcLoop;
      for (const r of [...runs, ...gcRuns]) assert.equal(r.code, 0, `a run failed (${r.code}): ${r.stderr}${r.stdout}`);
      for (let i = 0; i < 2; i++) {
        assert.ok(qemuCompare(img(`pul${i}`), path.join(t.dir, `pulled${i}-${round}.raw`)).identical, `pull ${i} round ${round}`);
        sources.delete(`pul${i}:r${round}`);
        sources.set(`pul${i}`, img(`pul${i}`));
      }
      const v = vmdnOk(store, ['verify']);
      assert.equal(v.ok, true, `round ${round}: ${JSON.stringify(v.problems.slice(0, 5))}`);
      for (const [ref, src] of sources) {
        const out = path.join(t.dir, 'out.raw');
        vmdnOk(store, ['export', ref, out]);
        assert.ok(qemuCompare(src, out).identical, `${ref} round ${round}`);
        fs.rmSync(out);
      }
    }
  });
});
