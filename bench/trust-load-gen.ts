/**
 * The load generator of the origin load test (bench/trust-load.ts), its own
 * process so the origin's RSS and CPU are only its own. `clients` keep-alive
 * clients GET objects and image records in a loop for `seconds`: every fifth
 * one sends a scoped read token and asks for the private image, the others are
 * anonymous (4 object GETs to 1 name GET). With `slowloris` > 0, that many
 * extra sockets are held open for the whole phase: half send their headers a
 * byte every 2 s, half send a body a byte every 2 s that never ends; each one
 * the origin drops is reconnected (an attacker would), and counted.
 *
 *   node dist/bench/trust-load-gen.js --opts OPTS.json  → one JSON line (GenResult) on stdout
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

export interface GenOptions {
  url: string;
  clients: number;
  seconds: number;
  slowloris: number;
  /** Head start of the slow sockets before the timed load, s. */
  slowHeadStart?: number;
  objects: string[];
  names: string[];
  privateObjects: string[];
  privateNames: string[];
  token: string;
}

export interface GenResult {
  requests: number;
  errors: number;
  errorKinds: Record<string, number>;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  slowSockets: number;
  slowDropped: number;
}

function slowSocket(port: number, kind: 'headers' | 'body', stop: { done: boolean }, onDrop: () => void): void {
  const first = kind === 'headers'
    ? 'GET /v1/images HTTP/1.1\r\nHost: origin\r\n'
    : 'POST /v1/objects/batch HTTP/1.1\r\nHost: origin\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{"digests": [';
  const s = net.connect(port, '127.0.0.1', () => s.write(first));
  const timer = setInterval(() => s.writable && s.write(kind === 'headers' ? 'X' : ' '), 2000);
  s.on('data', () => {});
  s.on('error', () => {});
  s.on('close', () => {
    clearInterval(timer);
    if (stop.done) return;
    onDrop();
    slowSocket(port, kind, stop, onDrop);
  });
  stopSockets.push(s);
}
const stopSockets: net.Socket[] = [];

export async function generate(o: GenOptions): Promise<GenResult> {
  const port = Number(new URL(o.url).port);
  const stop = { done: false };
  let slowDropped = 0;
  for (let i = 0; i < o.slowloris; i++) slowSocket(port, i % 2 ? 'body' : 'headers', stop, () => slowDropped++);
  if (o.slowloris) await new Promise((r) => setTimeout(r, (o.slowHeadStart ?? 2) * 1000));

  const agent = new http.Agent({ keepAlive: true, maxSockets: o.clients });
  const lat: number[] = [];
  const errorKinds: Record<string, number> = {};
  const fail = (k: string) => (errorKinds[k] = (errorKinds[k] ?? 0) + 1);
  const get = (path: string, token?: string) => new Promise<void>((resolve) => {
    const t0 = performance.now();
    const req = http.get(o.url + path, { agent, headers: token ? { authorization: `Bearer ${token}` } : {}, timeout: 30_000 }, (res) => {
      res.on('data', () => {});
      res.on('end', () => {
        if (res.statusCode === 200) lat.push(performance.now() - t0);
        else fail(`HTTP ${res.statusCode} ${path.split('/')[2]}${token ? ' (token)' : ''}`);
        resolve();
      });
      res.on('error', (e) => (fail(e.message), resolve()));
    });
    req.on('timeout', () => req.destroy(new Error('timeout 30 s')));
    req.on('error', (e) => (fail((e as NodeJS.ErrnoException).code ?? e.message), resolve()));
  });
  const end = performance.now() + o.seconds * 1000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: o.clients }, async (_, c) => {
    const priv = c % 5 === 0;
    for (let i = c; performance.now() < end; i++) {
      if (priv) await get(i % 5 ? `/v1/objects/${o.privateObjects[i % o.privateObjects.length]}` : `/v1/images/${o.privateNames[i % o.privateNames.length]}`, o.token);
      else await get(i % 5 ? `/v1/objects/${o.objects[i % o.objects.length]}` : `/v1/images/${o.names[i % o.names.length]}`);
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  stop.done = true;
  const slowSockets = stopSockets.filter((s) => !s.destroyed).length;
  for (const s of stopSockets) s.destroy();
  agent.destroy();
  lat.sort((a, b) => a - b);
  const q = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]! : NaN);
  const errors = Object.values(errorKinds).reduce((a, b) => a + b, 0);
  return { requests: lat.length, errors, errorKinds, requestsPerSecond: lat.length / wall, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: lat.at(-1) ?? NaN, slowSockets, slowDropped };
}

if (process.argv[2] === '--opts') {
  const r = await generate(JSON.parse(fs.readFileSync(process.argv[3]!, 'utf8')) as GenOptions);
  process.stdout.write(JSON.stringify(r) + '\n');
  process.exit(0);
}
