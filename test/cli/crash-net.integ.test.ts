/**
 * Crash points of the commands that move objects over HTTP (issue 16 item 5):
 * SIGKILL `vmdn pull`, `push` and `nbd --from` (fill on, mid-read of a
 * qemu-img convert) at seeded random moments of an uninterrupted run. After
 * each kill the store verifies, and the re-run completes fetching (or
 * uploading) only what was not stored complete before it: the origin's
 * /stats counters measure it. Each lane has its own origin, so a counter's
 * change is one run's. Seed: VMDN_CRASH_SEED; points: VMDN_CRASH_POINTS.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { startServe, type Served } from '../helpers/serve.js';
import { waitFor } from '../helpers/cli.js';
import { CRASH_SEED, objectsWritten, inLanes, killMoments, measureRun, runVmdn, sha256File, smallImage, tally, verifyDir, vmdnDone } from '../helpers/crash.js';

const LANES = 2;
const TOKEN = 'crash-points-token-0123456789abcdef';

interface OriginStats { objectRequests: number; objectsUploaded: number; objects: number }
const stats = async (url: string): Promise<OriginStats> => (await (await fetch(`${url}/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as OriginStats;

/** qemu-img convert of the NBD export to a raw file; resolves with its exit status. */
function convert(sock: string, out: string): Promise<number | null> {
  return new Promise((resolve) => {
    const c = spawn('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `nbd+unix:///victim?socket=${sock}`, out], { stdio: 'ignore' });
    c.on('close', (code) => resolve(code));
  });
}

describe(`crash points: pull, push, nbd --from (seed ${CRASH_SEED}, VMDN_CRASH_SEED to replay)`, () => {
  let t: ReturnType<typeof tmpDir>;
  let image: string;
  let imageSha: string;
  let local: string;
  const origins: Served[] = [];
  before(async () => {
    t = tmpDir('vmdn-crash-net-');
    process.env.VMDN_TOKEN = TOKEN; // the origins take uploads with it, push sends it
    image = path.join(t.dir, 'victim.raw');
    smallImage(image, CRASH_SEED);
    imageSha = sha256File(image);
    local = path.join(t.dir, 'local');
    await vmdnDone(['import', image, '--name', 'victim', '--store', local, '--json']);
    for (let lane = 0; lane < LANES; lane++) {
      const store = path.join(t.dir, `origin-${lane}`);
      fs.cpSync(local, store, { recursive: true });
      origins.push(await startServe(store, { args: ['--no-portal'] }));
    }
  });
  after(async () => {
    for (const o of origins) await o.stop();
    delete process.env.VMDN_TOKEN;
    t.cleanup();
  });

  it('pull: after a kill at any moment the cache verifies and a re-run fetches only what it lacked', { timeout: 300_000 }, async () => {
    const pull = (url: string, cache: string, out: string) => ['pull', url, 'victim', out, '--cache', cache, '--json'];
    const total = (await stats(origins[0]!.url)).objects;
    const wholeOut = path.join(t.dir, 'pull-whole.raw');
    const wholeCache = path.join(t.dir, 'pull-whole');
    const whole = await measureRun(pull(origins[0]!.url, wholeCache, wholeOut), () => objectsWritten(wholeCache));
    const hows = await inLanes(killMoments(CRASH_SEED + 4, whole.workMs), LANES, async (ms, i, lane) => {
      const url = origins[lane]!.url;
      const cache = path.join(t.dir, `pull-${i}`);
      const out = path.join(t.dir, `pull-${i}.raw`);
      const killed = await runVmdn(pull(url, cache, out), { probe: () => objectsWritten(cache), delayMs: ms }).done;
      const what = `point ${i} (${ms} ms, ${killed.how})`;
      const v = fs.existsSync(cache) ? await verifyDir(cache) : { problems: [], objects: 0 };
      assert.deepEqual(v.problems, [], what);
      const before = (await stats(url)).objectRequests;
      await vmdnDone(pull(url, cache, out));
      const fetched = (await stats(url)).objectRequests - before;
      // the re-run completes, so it fetched at least what was missing: at most that means nothing stored was fetched again
      assert.ok(fetched <= total - v.objects, `${what}: fetched ${fetched} with ${v.objects} of ${total} objects already stored`);
      assert.equal(sha256File(out), imageSha, what);
      fs.rmSync(cache, { recursive: true });
      fs.rmSync(out);
      return killed.how !== 'SIGKILL' ? killed.how : v.objects > 0 ? 'SIGKILL mid-fetch' : 'SIGKILL before any object';
    });
    console.log(`pull: ${hows.length} points, delays from the work's start (${whole.workMs} ms of work after ${whole.workAt} ms): ${tally(hows)}`);
  });

  it('push: after a kill at any moment both stores verify and a re-push uploads only what the origin lacks', { timeout: 300_000 }, async () => {
    const push = (url: string) => ['push', 'victim', url, '--name', 'victim', '--store', local, '--json'];
    // a fresh origin per point: an empty one where every object is to be sent
    const freshOrigin = async (name: string) => {
      const store = path.join(t.dir, name);
      fs.mkdirSync(store);
      return { store, served: await startServe(store, { args: ['--no-portal'] }) };
    };
    const w = await freshOrigin('push-whole');
    const whole = await measureRun(push(w.served.url), () => objectsWritten(w.store));
    await w.served.stop();
    const objects = JSON.parse(whole.stdout).objects;
    const hows = await inLanes(killMoments(CRASH_SEED + 5, whole.workMs), LANES, async (ms, i) => {
      const o = await freshOrigin(`push-${i}`);
      try {
        const killed = await runVmdn(push(o.served.url), { probe: () => objectsWritten(o.store), delayMs: ms }).done;
        const what = `point ${i} (${ms} ms, ${killed.how})`;
        const had = (await stats(o.served.url)).objects;
        assert.deepEqual((await verifyDir(o.store)).problems, [], `${what}: origin`);
        const r = await vmdnDone(push(o.served.url));
        assert.ok(r.objectsSent <= objects - had, `${what}: sent ${r.objectsSent} of ${objects} with ${had} at the origin`);
        await o.served.stop();
        const v = await verifyDir(o.store);
        assert.deepEqual(v.problems, [], `${what}: origin after the re-push`);
        return killed.how === 'SIGKILL' && had > 0 ? 'SIGKILL mid-upload' : killed.how;
      } finally {
        await o.served.stop();
        fs.rmSync(o.store, { recursive: true });
      }
    });
    assert.deepEqual((await verifyDir(local)).problems, [], 'the pushing store');
    console.log(`push: ${hows.length} points, delays from the work's start (${whole.workMs} ms of work after ${whole.workAt} ms): ${tally(hows)}`);
  });

  it('nbd --from: a server killed mid-read restarts on the same cache, serves the image and fetches only what it lacked', { timeout: 300_000 }, async () => {
    const total = (await stats(origins[0]!.url)).objects;
    /** Start the server, convert through it; `killAt` ms after it listens, SIGKILL the server. */
    const serveAndRead = async (url: string, cache: string, out: string, killAt?: number) => {
      const sock = `${cache}.sock`;
      const t0 = Date.now();
      const nbd = runVmdn(['nbd', 'victim', '--from', url, '--cache', cache, '--store', cache, '--socket', sock, '--readonly', '--json']);
      let ended = false;
      void nbd.done.then(() => (ended = true));
      await waitFor(() => ended || fs.existsSync(sock), 30_000, 'vmdn nbd to listen');
      const workAt = Date.now() - t0;
      const timer = killAt === undefined ? undefined : setTimeout(nbd.kill, killAt);
      const code = ended ? null : await convert(sock, out);
      clearTimeout(timer);
      const ms = Date.now() - t0;
      if (!ended) nbd.kill();
      const r = await nbd.done;
      fs.rmSync(sock, { force: true });
      return { code, how: r.how, ms, workAt, workMs: ms - workAt };
    };
    const whole = await serveAndRead(origins[0]!.url, path.join(t.dir, 'nbd-whole'), path.join(t.dir, 'nbd-whole.raw'));
    assert.equal(whole.code, 0);
    const hows = await inLanes(killMoments(CRASH_SEED + 6, whole.workMs), LANES, async (ms, i, lane) => {
      const url = origins[lane]!.url;
      const cache = path.join(t.dir, `nbd-${i}`);
      const out = path.join(t.dir, `nbd-${i}.raw`);
      const killed = await serveAndRead(url, cache, out, ms);
      const what = `point ${i} (${ms} ms, convert ${killed.code})`;
      const v = fs.existsSync(cache) ? await verifyDir(cache) : { problems: [], objects: 0 };
      assert.deepEqual(v.problems, [], what);
      const before = (await stats(url)).objectRequests;
      const again = await serveAndRead(url, cache, out);
      assert.equal(again.code, 0, `${what}: the restarted server`);
      assert.equal(sha256File(out), imageSha, what);
      const fetched = (await stats(url)).objectRequests - before;
      assert.ok(fetched <= total - v.objects, `${what}: fetched ${fetched} with ${v.objects} of ${total} objects already stored`);
      fs.rmSync(cache, { recursive: true });
      fs.rmSync(out, { force: true });
      return killed.code === 0 ? 'read done first' : v.objects > 0 ? 'killed mid-read' : 'killed before any object';
    });
    console.log(`nbd: ${hows.length} points, delays from the work's start (${whole.workMs} ms of work after ${whole.workAt} ms): ${tally(hows)}`);
  });
});
