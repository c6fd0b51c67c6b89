/**
 * An origin under unauthenticated load: a real `vmdn serve` child holding a
 * few MB of objects takes 64 concurrent hostile pack and batch requests
 * (every object named over and over, as digests and as references) while its
 * RSS (/proc/PID/status) and /health latency are sampled. Repeats cost
 * nothing, pack work waits for a slot or is refused (503, Retry-After), and
 * batch reads share one byte budget.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { CLI } from '../helpers/cli.js';
import { prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { startServe } from '../helpers/serve.js';

const agent = new http.Agent({ keepAlive: false, maxSockets: 256 });

/** POST `body`, read the whole answer; resolves to its status, Retry-After and size. */
function post(url: string, body: unknown): Promise<{ status: number; retryAfter?: string; bytes: number }> {
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': data.length } }, (res) => {
      let bytes = 0;
      res.on('data', (b: Buffer) => { bytes += b.length; });
      res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'], bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

function vmRss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/**
 * /health latencies (ms), asked every 100 ms by a process of its own (this
 * one is busy reading the hostile answers) until stop() resolves them.
 */
function healthPinger(url: string): { stop: () => Promise<number[]> } {
  const script = `
    const http = require('node:http');
    let on = true;
    process.stdin.on('data', () => { on = false; });
    (async () => {
      while (on) {
        const t0 = performance.now();
        await new Promise((resolve, reject) => http.get(process.argv[1] + '/health', (res) => res.resume().on('end', resolve)).on('error', reject));
        console.log(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();`;
  const p = spawn(process.execPath, ['-e', script, url], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  p.stdout!.on('data', (b: Buffer) => { out += b; });
  return {
    stop: () => new Promise((resolve) => {
      p.on('exit', () => resolve(out.trim().split('\n').filter(Boolean).map(Number)));
      p.stdin!.end('stop');
    }),
  };
}

describe('origin under hostile load', () => {
  let t: ReturnType<typeof tmpDir>;
  let child: ChildProcess;
  let url: string;
  const digests: string[] = [];
  let storedBytes = 0;

  before(async () => {
    t = tmpDir('vmdn-load-');
    const store = await LocalStore.open(path.join(t.dir, 'store'));
    // 4 MB that does not compress: the most work a pack of them can be
    for (let i = 0; i < 16; i++) {
      const r = await store.put(prng(1000 + i, 256 << 10));
      digests.push(r.digest);
      storedBytes += r.storedSize;
    }
    await store.close();
    ({ child, url } = await startServe(path.join(t.dir, 'store')));
  });

  after(() => {
    child.kill('SIGTERM');
    agent.destroy();
    t.cleanup();
  });

  it('64 concurrent pack and batch requests naming every object over and over: RSS < 300 MB, /health stays fast', { timeout: 120_000 }, async () => {
    // the anchor: /health on the idle origin, asked the same way, in this run (the machine's own load counts in both)
    const idlePinger = healthPinger(url);
    await new Promise((r) => setTimeout(r, 1500));
    const idle = Math.max(...(await idlePinger.stop()));
    const repeat = (n: number) => Array.from({ length: n }, (_v, i) => digests[i % digests.length]!);
    const pack = { digests: repeat(1024), refs: repeat(4096) };
    const batch = { digests: repeat(1024) };
    const baseline = vmRss(child.pid!);
    let peak = baseline;
    const sampler = setInterval(() => { peak = Math.max(peak, vmRss(child.pid!)); }, 20);
    const pinger = healthPinger(url);
    // two waves: the second meets whatever the first left behind
    const answers: Array<{ kind: string; status: number; retryAfter?: string; bytes: number }> = [];
    for (let wave = 0; wave < 2; wave++) {
      const sent = Array.from({ length: 64 }, (_v, i) => (i % 2 ? post(`${url}/v1/objects/batch`, batch).then((r) => ({ kind: 'batch', ...r })) : post(`${url}/v1/objects/pack`, pack).then((r) => ({ kind: 'pack', ...r }))));
      answers.push(...(await Promise.all(sent)));
    }
    clearInterval(sampler);
    const health = await pinger.stop();
    peak = Math.max(peak, vmRss(child.pid!));
    const packs = answers.filter((a) => a.kind === 'pack');
    const batches = answers.filter((a) => a.kind === 'batch');
    const slowest = Math.max(...health);
    console.log(`origin RSS ${Math.round(baseline / 2 ** 20)} -> peak ${Math.round(peak / 2 ** 20)} MiB; /health idle ${idle.toFixed(0)} ms, slowest under load ${slowest.toFixed(0)} ms of ${health.length}; packs ${packs.filter((a) => a.status === 200).length} served, ${packs.filter((a) => a.status === 503).length} busy`);
    assert.ok(peak < 300 << 20, `origin RSS peaked at ${Math.round(peak / 2 ** 20)} MiB`);
    // generous: the machines this runs on share 2 cores with other work (most answers take a few ms)
    // under load /health may wait for a few answers in flight, never for the whole wave (~10 s when packs were unbounded)
    const bound = Math.max(2000, 40 * idle);
    assert.ok(slowest < bound, `/health took ${slowest.toFixed(0)} ms under load (idle ${idle.toFixed(0)} ms, bound ${bound.toFixed(0)} ms)`);
    // each object once per answer, however often it was named
    for (const b of batches) {
      assert.equal(b.status, 200);
      assert.equal(b.bytes, storedBytes + 36 * digests.length);
    }
    for (const p of packs) assert.ok(p.status === 200 || (p.status === 503 && p.retryAfter === '2'), `pack answered ${p.status}`);
    assert.ok(packs.some((p) => p.status === 503), 'some packs were refused as busy');
    assert.ok(packs.some((p) => p.status === 200), 'some packs were served');
  });
});
