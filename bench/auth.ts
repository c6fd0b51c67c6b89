/**
 * The origin's extra CPU per request for tokens and private images (issue 16:
 * it should stay under 1 % of serving a 32 KiB object). `node dist/bench/auth.js`
 *
 * The origin runs in a child process and reports its own CPU time (user +
 * system, process.cpuUsage) over N keep-alive GETs of 32 KiB objects, in four
 * set-ups: no tokens (today), a scoped token on every request, a private image
 * in the store (anonymous requests: each object is looked up in the index),
 * and both. CPU time, not wall clock: the machine is shared. Also the added
 * calls alone (authenticate + visibility), timed in this process.
 */
import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LocalStore } from '../src/store/local/local-store.js';
import { parseImageRef } from '../src/store/image-name.js';
import { importImageFile } from '../src/images/import.js';
import { parseChunkerSpec } from '../src/strategy/chunker.js';
import { Origin } from '../src/net/server/origin.js';
import { TokenStore } from '../src/net/server/tokens.js';
import { Visibility } from '../src/net/server/visibility.js';
import { Authenticator } from '../src/net/server/auth.js';

const N = Number(process.env.BENCH_AUTH_REQUESTS) || 6000;
const ROUNDS = Number(process.env.BENCH_AUTH_ROUNDS) || 3;

export interface AuthResult {
  requests: number;
  objects: number;
  /** Origin CPU µs per 32 KiB object GET, median of the rounds, and each round's. */
  setups: { name: string; us: number; runs: number[]; percentOverBase: number }[];
  /** The added calls alone, µs per request. */
  calls: { label: string; us: number }[];
}

async function child(dir: string, mode: string): Promise<void> {
  const store = await LocalStore.open(dir);
  const tokens = mode === 'plain' ? undefined : new TokenStore(store);
  const origin = new Origin(store, { tokens, token: mode === 'plain' ? undefined : 'admin-bench-token' });
  const url = await origin.listen();
  process.on('message', (m) => {
    if (m === 'cpu') process.send!(process.cpuUsage());
    if (m === 'exit') void origin.close().then(() => store.close()).then(() => process.exit(0));
  });
  process.send!({ url });
}

function ask<T>(c: ChildProcess, msg: string): Promise<T> {
  return new Promise((resolve) => {
    c.once('message', (m) => resolve(m as T));
    c.send(msg);
  });
}

async function measure(dir: string, mode: string, digests: string[], token: string | undefined, n: number): Promise<number> {
  const c = fork(fileURLToPath(import.meta.url), ['serve', dir, mode]);
  const { url } = await new Promise<{ url: string }>((resolve) => c.once('message', (m) => resolve(m as { url: string })));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const get = (d: string) => new Promise<void>((resolve, reject) => {
    http.get(`${url}/v1/objects/${d}`, { agent, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      if (res.statusCode !== 200) reject(new Error(`${res.statusCode} for ${d}`));
      res.resume();
      res.on('end', resolve);
    }).on('error', reject);
  });
  // warm-up: the token's scrypt, the page cache, the JIT
  for (let i = 0; i < 300; i++) await get(digests[i % digests.length]!);
  const a = await ask<NodeJS.CpuUsage>(c, 'cpu');
  let next = 0;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (next < n) await get(digests[next++ % digests.length]!);
  }));
  const b = await ask<NodeJS.CpuUsage>(c, 'cpu');
  agent.destroy();
  c.send('exit');
  return (b.user - a.user + b.system - a.system) / n;
}

/** The measurements: `requests` GETs per set-up and round, `calls` timed calls of each added step. */
export async function benchAuth(o: { requests?: number; rounds?: number; calls?: number } = {}): Promise<AuthResult> {
  const N = o.requests ?? 6000;
  const ROUNDS = o.rounds ?? 3;
  const M = o.calls ?? 200000;
  const t = fs.mkdtempSync(path.join(os.tmpdir(), 'vmdn-bench-auth-'));
  try {
    const img = path.join(t, 'img.raw');
    const buf = Buffer.alloc(16 << 20);
    for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i);
    fs.writeFileSync(img, buf);
    const dirs = { pub: path.join(t, 'pub'), priv: path.join(t, 'priv') };
    let digests: string[] = [];
    for (const [k, dir] of Object.entries(dirs)) {
      const s = await LocalStore.open(dir);
      await importImageFile(s, img, parseImageRef('pub:1'), { chunker: parseChunkerSpec('fixed:32k') });
      if (k === 'priv') {
        // the same image under a private name: every object is shared, so the index is asked about each
        await importImageFile(s, img, parseImageRef('team/x:1'), { chunker: parseChunkerSpec('fixed:32k') });
        await new Visibility(s, s).setPrivate('team/x', true);
      }
      digests = s.index.listObjects().filter((o) => o.size === 32 << 10).map((o) => o.digest);
      await s.close();
    }
    // each store has its own reader token: make one per store for the runs
    const tokenFor = async (dir: string) => {
      const s = await LocalStore.open(dir);
      const tok = (await new TokenStore(s).create({ read: ['team/'], write: [], admin: false })).token;
      await s.close();
      return tok;
    };
    const setups = [
      { name: 'no tokens, anonymous (today)', dir: dirs.pub, mode: 'plain', token: undefined as string | undefined },
      { name: 'scoped token on every request', dir: dirs.pub, mode: 'tokens', token: await tokenFor(dirs.pub) },
      { name: 'a private image in the store, anonymous', dir: dirs.priv, mode: 'tokens', token: undefined },
      { name: 'a private image in the store, scoped token', dir: dirs.priv, mode: 'tokens', token: await tokenFor(dirs.priv) },
    ];
    const us: number[][] = setups.map(() => []);
    for (let r = 0; r < ROUNDS; r++) for (const [i, s] of setups.entries()) us[i]!.push(await measure(s.dir, s.mode, digests, s.token, N));
    const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
    const base = med(us[0]!);
    const result: AuthResult = {
      requests: N, objects: digests.length, calls: [],
      setups: setups.map((s, i) => ({ name: s.name, us: med(us[i]!), runs: us[i]!, percentOverBase: ((med(us[i]!) - base) / base) * 100 })),
    };

    // the added calls alone
    const s = await LocalStore.open(dirs.priv);
    const tokens = new TokenStore(s);
    const token = await tokenFor(dirs.priv);
    const authn = new Authenticator({ tokens });
    const vis = new Visibility(s, s);
    const req = { headers: { authorization: `Bearer ${token}` } } as unknown as http.IncomingMessage;
    const anon = { headers: {} } as unknown as http.IncomingMessage;
    const time = async (label: string, fn: (i: number) => Promise<unknown>) => {
      for (let i = 0; i < Math.min(20000, M); i++) await fn(i);
      const a = process.cpuUsage();
      for (let i = 0; i < M; i++) await fn(i);
      const b = process.cpuUsage(a);
      result.calls.push({ label, us: (b.user + b.system) / M });
    };
    await time('authenticate (scoped token, verified before)', () => authn.authenticate(req));
    await time('authenticate (anonymous)', () => authn.authenticate(anon));
    const p = await authn.authenticate(req);
    await time('visibility of one object, a private image in the store', (i) => vis.objects(p, [digests[i % digests.length]!]));
    await s.close();
    return result;
  } finally {
    fs.rmSync(t, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const r = await benchAuth({ requests: N, rounds: ROUNDS });
  console.log(`origin CPU per 32 KiB object GET (median of ${ROUNDS} runs of ${N}, ${r.objects} objects):`);
  for (const s of r.setups) console.log(`  ${s.name.padEnd(46)} ${s.us.toFixed(1).padStart(6)} us  (${s.percentOverBase.toFixed(2)} %; runs ${s.runs.map((x) => x.toFixed(1)).join(', ')})`);
  console.log('the added calls alone, per request:');
  for (const c of r.calls) console.log(`  ${c.label.padEnd(58)} ${c.us.toFixed(2)} us`);
}

// a script (and the origin child it forks), not when bench/trust.ts imports it
if (process.argv[2] === 'serve') void child(process.argv[3]!, process.argv[4]!);
else if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) void main();
