/**
 * Crash points (issue 16 item 5): SIGKILL a vmdn command at seeded random
 * moments of an uninterrupted run's measured duration, then check the store.
 * The seed is printed; VMDN_CRASH_SEED replays it, VMDN_CRASH_POINTS sets how
 * many points each command gets (default 20).
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CLI } from './cli.js';
import { mulberry32, seedFrom } from './rng.js';
import { writeRaw, prng } from './images.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { verifyStore } from '../../src/images/maintenance.js';
import { exportImageFile } from '../../src/images/export.js';
import { parseImageRef } from '../../src/store/image-name.js';

export const CRASH_SEED = seedFrom('VMDN_CRASH_SEED');
export const CRASH_POINTS = Number(process.env.VMDN_CRASH_POINTS ?? 20);
const MiB = 1024 * 1024;

export interface Ended {
  /** 'SIGKILL' when the kill landed, else `exit N` (the run finished first). */
  how: string;
  stdout: string;
  stderr: string;
  ms: number;
}

/** When to SIGKILL a run: `delayMs` after `probe` (polled every 2 ms) first sees the command's own work. */
export interface KillPoint {
  probe: () => boolean;
  delayMs: number;
}

/**
 * Run `vmdn ARGS`; with `at`, SIGKILL it there (or `kill()` it any time).
 * Counting from the work's start, not the spawn, keeps a point inside a
 * short work window however long node takes to start on a loaded machine.
 */
export function runVmdn(args: string[], at?: KillPoint): { done: Promise<Ended>; kill: () => void } {
  const t0 = Date.now();
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b) => (stdout += b));
  child.stderr.on('data', (b) => (stderr += b));
  const kill = () => child.kill('SIGKILL');
  let timer: NodeJS.Timeout | undefined;
  const poll = at && setInterval(() => {
    if (!at.probe()) return;
    clearInterval(poll);
    timer = setTimeout(kill, at.delayMs);
  }, 2);
  const done = new Promise<Ended>((resolve) => child.on('close', (code, signal) => {
    clearInterval(poll);
    clearTimeout(timer);
    resolve({ how: signal ?? `exit ${code}`, stdout, stderr, ms: Date.now() - t0 });
  }));
  return { done, kill };
}

/** Run to completion; throws with its stderr if it fails. Returns the --json output. */
export async function vmdnDone(args: string[]): Promise<any> {
  const r = await runVmdn(args).done;
  if (r.how !== 'exit 0') throw new Error(`vmdn ${args.join(' ')}: ${r.how}: ${r.stderr}${r.stdout}`);
  try {
    return JSON.parse(r.stdout);
  } catch {
    return undefined;
  }
}

/** `points` kill delays in [0, workMs) after the work starts, from `seed` (one stream per command, so each replays alone). */
export function killMoments(seed: number, workMs: number, points = CRASH_POINTS): number[] {
  const rand = mulberry32(seed);
  return Array.from({ length: points }, () => Math.floor(rand() * Math.max(workMs, 1)));
}

/**
 * An uninterrupted run, timed: `ms` in all, and `workAt`, when `probe` (polled
 * every 2 ms: a file appeared, objects went) first saw the command's own work;
 * `workMs` = ms - workAt is the window the kill points are drawn from.
 */
export async function measureRun(args: string[], probe: () => boolean): Promise<Ended & { workAt: number; workMs: number }> {
  const t0 = Date.now();
  let workAt: number | undefined;
  const timer = setInterval(() => {
    if (workAt === undefined && probe()) workAt = Date.now() - t0;
  }, 2);
  const r = await runVmdn(args).done;
  clearInterval(timer);
  if (r.how !== 'exit 0') throw new Error(`vmdn ${args.join(' ')}: ${r.how}: ${r.stderr}`);
  workAt ??= r.ms;
  return { ...r, workAt, workMs: r.ms - workAt };
}

/** Files under `dir` (0 if it is not there yet): a probe for objects stored or deleted. */
export function filesUnder(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length;
}

/** Whether a store has begun keeping objects: a loose file, or a pack (created at its first object). */
export function objectsWritten(store: string): boolean {
  return filesUnder(path.join(store, 'objects')) > 0 || filesUnder(path.join(store, 'packs')) > 0;
}

/** Run `fn` over `items` in `lanes` parallel lanes (a 2-core CI runner). */
export async function inLanes<T, R>(items: T[], lanes: number, fn: (item: T, index: number, lane: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: lanes }, async (_, lane) => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]!, i, lane);
  }));
  return out;
}

/**
 * What `vmdn verify` checks (every object re-hashed, every image rebuildable),
 * in this process: a CLI start per point would cost more than the points.
 * Returns the problems verify would fail on, and the objects in the index.
 */
export async function verifyDir(dir: string): Promise<{ problems: unknown[]; objects: number }> {
  const s = await LocalStore.open(dir);
  try {
    const r = await s.writing(() => verifyStore(s));
    return { problems: r.problems.filter((p) => p.problem !== 'unindexed'), objects: (await s.totals()).objects };
  } finally {
    await s.close();
  }
}

/** The sha256 of `name` exported from `dir` (in this process, as `vmdn export` writes it). */
export async function exportedSha(dir: string, name: string, out: string): Promise<string> {
  const s = await LocalStore.open(dir);
  try {
    await exportImageFile(s, parseImageRef(name), out, {});
    return sha256File(out);
  } finally {
    await s.close();
    fs.rmSync(out, { force: true });
  }
}

export function sha256File(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** A few MiB of varied data (random, text, zeros, a repeat): small enough that a whole run is mostly start-up. */
export function smallImage(file: string, seed: number, size = 6 * MiB): void {
  writeRaw(file, size, [
    { offset: 0, data: prng(seed, 1 * MiB) },
    { offset: 1536 * 1024, data: Buffer.from(`crash point ${seed}\n`.repeat(40000)) },
    { offset: 3 * MiB, data: prng(seed + 1, 1 * MiB) },
    { offset: 4 * MiB + 512, data: prng(seed, 1 * MiB) }, // the first MiB again, unaligned
    { offset: size - 700, data: prng(seed + 2, 700) },
  ]);
}

/** Tally of how the killed runs ended, for the log line. */
export function tally(hows: string[]): string {
  const n = new Map<string, number>();
  for (const h of hows) n.set(h, (n.get(h) ?? 0) + 1);
  return [...n].map(([k, v]) => `${v}x ${k}`).join(', ');
}
