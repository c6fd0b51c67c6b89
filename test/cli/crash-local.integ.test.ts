/**
 * Crash points of the store-only commands (issue 16 item 5): SIGKILL `vmdn
 * import`, `export` and `gc` at seeded random moments of an uninterrupted
 * run; after each kill the store verifies and a re-run completes with the
 * same result. Seed: VMDN_CRASH_SEED; points per command: VMDN_CRASH_POINTS.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { CRASH_SEED, exportedSha, filesUnder, objectsWritten, measureRun, inLanes, killMoments, runVmdn, sha256File, smallImage, tally, verifyDir, vmdnDone } from '../helpers/crash.js';
import { indexedObjects } from '../helpers/store-objects.js';
import { LocalStore } from '../../src/store/local/local-store.js';

const LANES = 2;

/** Every file of a store but the SQLite side files, with size and content hash: "untouched" means this is unchanged. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (!/-(wal|shm|journal)$/.test(e.name)) out.push(`${path.relative(dir, p)} ${fs.statSync(p).size} ${sha256File(p).slice(0, 16)}`);
    }
  };
  walk(dir);
  return out.sort();
}

describe(`crash points: import, export, gc (seed ${CRASH_SEED}, VMDN_CRASH_SEED to replay)`, () => {
  let t: ReturnType<typeof tmpDir>;
  let image: string;
  let imageSha: string;
  before(() => {
    t = tmpDir('vmdn-crash-');
    image = path.join(t.dir, 'victim.raw');
    smallImage(image, CRASH_SEED);
    imageSha = sha256File(image);
  });
  after(() => t.cleanup());

  it('import: after a kill at any moment the store verifies and a re-run imports the same image', { timeout: 300_000 }, async () => {
    const imp = (store: string) => ['import', image, '--name', 'victim', '--store', store, '--json'];
    const fresh = async (name: string) => {
      const store = path.join(t.dir, name);
      await (await LocalStore.open(store)).close(); // the store exists: kills land in the import, not in making it
      return store;
    };
    const wholeStore = await fresh('import-whole');
    const whole = await measureRun(imp(wholeStore), () => objectsWritten(wholeStore));
    const manifest = JSON.parse(whole.stdout).manifest;
    const hows = await inLanes(killMoments(CRASH_SEED + 1, whole.workMs), LANES, async (ms, i) => {
      const store = await fresh(`import-${i}`);
      const killed = await runVmdn(imp(store), { probe: () => objectsWritten(store), delayMs: ms }).done;
      const v = await verifyDir(store);
      assert.deepEqual(v.problems, [], `point ${i} (${ms} ms, ${killed.how})`);
      const how = killed.how === 'SIGKILL' && v.objects > 0 ? 'SIGKILL with objects stored' : killed.how;
      const again = await vmdnDone(imp(store));
      assert.equal(again.manifest, manifest, `point ${i}: the re-run stored another image`);
      fs.rmSync(store, { recursive: true });
      return how;
    });
    console.log(`import: ${hows.length} points, delays from the work's start (${whole.workMs} ms of work after ${whole.workAt} ms): ${tally(hows)}`);
  });

  it('export: a kill leaves no torn file at the output path and the store untouched; a re-run writes it whole', { timeout: 300_000 }, async () => {
    const store = path.join(t.dir, 'export-store');
    await vmdnDone(['import', image, '--name', 'victim', '--store', store, '--json']);
    const before = snapshot(store);
    const wholeDir = path.join(t.dir, 'export-whole');
    fs.mkdirSync(wholeDir);
    const whole = await measureRun(['export', 'victim', path.join(wholeDir, 'whole.raw'), '--store', store, '--json'], () => filesUnder(wholeDir) > 0);
    const outDir = path.join(t.dir, 'exports');
    fs.mkdirSync(outDir);
    const hows = await inLanes(killMoments(CRASH_SEED + 2, whole.workMs), LANES, async (ms, i) => {
      const out = path.join(outDir, `out-${i}.raw`);
      const mine = (f: string) => f.startsWith(`out-${i}.raw`); // its temp file, then the output
      const killed = await runVmdn(['export', 'victim', out, '--store', store, '--json'], { probe: () => fs.readdirSync(outDir).some(mine), delayMs: ms }).done;
      const what = `point ${i} (${ms} ms, ${killed.how})`;
      // the output is there whole, or not at all
      if (fs.existsSync(out)) assert.equal(sha256File(out), imageSha, `${what}: torn file at the output path`);
      await vmdnDone(['export', 'victim', out, '--store', store, '--json', '--force']);
      assert.equal(sha256File(out), imageSha, what);
      fs.rmSync(out);
      return killed.how;
    });
    assert.deepEqual(snapshot(store), before, 'killed exports changed the store');
    assert.deepEqual((await verifyDir(store)).problems, []);
    // a killed run's temp file beside its output is removed by the next export to that path
    const left = fs.readdirSync(outDir);
    assert.deepEqual(left, [], 'temp files of killed exports left behind');
    console.log(`export: ${hows.length} points, delays from the work's start (${whole.workMs} ms of work after ${whole.workAt} ms): ${tally(hows)}`);
  });

  it('gc: after a kill at any moment the store verifies, a re-run completes and every image exports identical', { timeout: 300_000 }, async () => {
    // a store where gc has work: one image kept, one removed whose own objects are garbage
    const template = path.join(t.dir, 'gc-template');
    const other = path.join(t.dir, 'other.raw');
    smallImage(other, CRASH_SEED + 100);
    await vmdnDone(['import', image, '--name', 'keep', '--store', template, '--json']);
    await vmdnDone(['import', other, '--name', 'gone', '--store', template, '--json']);
    await vmdnDone(['rm', 'gone', '--store', template, '--json']);
    const copy = (name: string) => {
      const store = path.join(t.dir, name);
      fs.cpSync(template, store, { recursive: true });
      return store;
    };
    const wholeStore = copy('gc-whole');
    const rowsBefore = indexedObjects(wholeStore);
    const whole = await measureRun(['gc', '--store', wholeStore, '--json'], () => indexedObjects(wholeStore) < rowsBefore);
    const removed = JSON.parse(whole.stdout).removedObjects;
    assert.ok(removed > 0, 'gc had nothing to remove: the test would prove nothing');
    const objectsAfter = (await verifyDir(path.join(t.dir, 'gc-whole'))).objects;
    const objectsBefore = (await verifyDir(template)).objects;
    const hows = await inLanes(killMoments(CRASH_SEED + 3, whole.workMs), LANES, async (ms, i) => {
      const store = copy(`gc-${i}`);
      const killed = await runVmdn(['gc', '--store', store, '--json'], { probe: () => indexedObjects(store) < rowsBefore, delayMs: ms }).done;
      const what = `point ${i} (${ms} ms, ${killed.how})`;
      const k = await verifyDir(store);
      assert.deepEqual(k.problems, [], what);
      const how = killed.how === 'SIGKILL' && k.objects < objectsBefore ? 'SIGKILL mid-delete' : killed.how;
      await vmdnDone(['gc', '--store', store, '--json']);
      const v = await verifyDir(store);
      assert.deepEqual(v.problems, [], what);
      assert.equal(v.objects, objectsAfter, `${what}: the re-run left another set of objects`);
      assert.equal(await exportedSha(store, 'keep', path.join(t.dir, `gc-out-${i}.raw`)), imageSha, what);
      fs.rmSync(store, { recursive: true });
      return how;
    });
    console.log(`gc: ${hows.length} points, delays from the work's start (${whole.workMs} ms of work after ${whole.workAt} ms, ${removed} objects to remove): ${tally(hows)}`);
  });
});
