/**
 * The origin under 500 concurrent clients (issue 16): a real `vmdn serve`
 * (bin/vmdn.js) on a small store of a few images, signing every record
 * (--sign-key) with scoped tokens and a private prefix, and a load generator
 * in its own process (bench/trust-load-gen.ts). Two phases: keep-alive clients
 * alone, then the same with a slowloris share held open. Measured: the
 * origin's peak RSS (VmHWM, and VmRSS sampled per phase), requests/s,
 * p50/p99 latency and errors of the normal clients.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalStore } from '../src/store/local/local-store.js';
import { importImageFile } from '../src/images/import.js';
import { parseImageRef } from '../src/store/image-name.js';
import { parseChunkerSpec } from '../src/strategy/chunker.js';
import { REPO, VMDN, peakRssOf, startVmdn } from './net-procs.js';
import type { GenOptions, GenResult } from './trust-load-gen.js';

export interface LoadOptions { workDir: string; clients: number; slowloris: number; seconds: number; images: number; imageMiB: number; log: (s: string) => void }
export interface LoadPhase extends GenResult { name: string; seconds: number; peakPhaseRssBytes: number }
export interface LoadResult { clients: number; slowloris: number; seconds: number; objects: number; phases: LoadPhase[]; peakRssBytes: number; loadavg: { start: number[]; end: number[] } }

function vmRss(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  } catch {
    return NaN;
  }
}

function vmdn(args: string[]): string {
  const r = spawnSync(process.execPath, [VMDN, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`vmdn ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Images of distinct pseudo-random content (no dedup between them), chunked at 32 KiB: every object is a 32 KiB GET. */
async function makeStore(dir: string, o: LoadOptions): Promise<{ objects: string[]; names: string[]; privateObjects: string[]; privateNames: string[] }> {
  const store = await LocalStore.open(dir);
  const names: string[] = [];
  const privateNames: string[] = [];
  const objectsOf = (s: LocalStore) => s.index.listObjects().filter((x) => x.size === 32 << 10).map((x) => x.digest);
  let privateObjects: string[] = [];
  try {
    for (let i = 0; i < o.images; i++) {
      const buf = Buffer.alloc(o.imageMiB << 20);
      for (let j = 0; j < buf.length; j += 4) buf.writeUInt32LE((Math.imul(j + 1, 2654435761) ^ Math.imul(i + 7, 40503) ^ (j >>> 9)) >>> 0, j);
      const raw = path.join(o.workDir, 'img.raw');
      fs.writeFileSync(raw, buf);
      const name = i === 0 ? 'team/private' : `public${i}`;
      await importImageFile(store, raw, parseImageRef(`${name}:1`), { chunker: parseChunkerSpec('fixed:32k') });
      (i === 0 ? privateNames : names).push(`${name}/1`);
      if (i === 0) privateObjects = objectsOf(store);
      fs.rmSync(raw);
    }
    // the first image's objects are private (team/ prefix), those the others added public
    const priv = new Set(privateObjects);
    return { objects: objectsOf(store).filter((d) => !priv.has(d)), names, privateObjects, privateNames };
  } finally {
    await store.close();
  }
}

async function runGen(opts: GenOptions, file: string, pid: number): Promise<{ r: GenResult; peak: number }> {
  fs.writeFileSync(file, JSON.stringify(opts));
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, vmRss(pid) || 0)), 250);
  try {
    const child = spawn(process.execPath, [path.join(REPO, 'dist', 'bench', 'trust-load-gen.js'), '--opts', file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    if (code !== 0) throw new Error(`load generator exited ${code}`);
    return { r: JSON.parse(out) as GenResult, peak };
  } finally {
    clearInterval(sampler);
  }
}

export async function benchOriginLoad(o: LoadOptions): Promise<LoadResult> {
  fs.rmSync(o.workDir, { recursive: true, force: true });
  fs.mkdirSync(o.workDir, { recursive: true });
  const store = path.join(o.workDir, 'store');
  o.log(`store: ${o.images} images of ${o.imageMiB} MiB`);
  const sets = await makeStore(store, o);
  vmdn(['key', 'generate', '--out', path.join(o.workDir, 'origin')]);
  const token = vmdn(['token', 'create', '--store', store, '--read', 'team/', '--note', 'bench']).trim();
  const srv = await startVmdn(['serve', '--store', store, '--sign-key', path.join(o.workDir, 'origin.key'), '--private-prefix', 'team/', '--no-portal']);
  const phases: LoadPhase[] = [];
  const loadStart = os.loadavg();
  try {
    // untimed warm-up: 500 connections opened, the JIT and the page cache warm, the first signatures made
    await runGen({ url: srv.url, clients: o.clients, seconds: 3, slowloris: 0, token, ...sets }, path.join(o.workDir, 'gen.json'), srv.pid);
    // the slowloris phase outlasts the headers timeout (15 s), so the origin's drops (and the reconnections) are part of it
    for (const [name, slowloris, seconds] of [['keep-alive clients', 0, o.seconds], ['with a slowloris share', o.slowloris, o.seconds + 10]] as const) {
      o.log(`${name}: ${o.clients} clients${slowloris ? ` + ${slowloris} slow sockets` : ''}, ${seconds} s`);
      const { r, peak } = await runGen({ url: srv.url, clients: o.clients, seconds, slowloris, token, ...sets }, path.join(o.workDir, 'gen.json'), srv.pid);
      o.log(`  ${r.requestsPerSecond.toFixed(0)} req/s, p50 ${r.p50Ms.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms, ${r.errors} errors, RSS peak ${(peak / 1e6).toFixed(0)} MB`);
      phases.push({ name, seconds, ...r, peakPhaseRssBytes: peak });
    }
    return { clients: o.clients, slowloris: o.slowloris, seconds: o.seconds, objects: sets.objects.length + sets.privateObjects.length, phases, peakRssBytes: peakRssOf(srv.pid), loadavg: { start: loadStart, end: os.loadavg() } };
  } finally {
    await srv.stop();
    fs.rmSync(o.workDir, { recursive: true, force: true });
  }
}
