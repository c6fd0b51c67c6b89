/** Run the real vmdn CLI (compiled) as a child process. */
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CLI = path.join(REPO, 'bin', 'vmdn.js');

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
  json: any;
}

export function vmdn(store: string, args: string[]): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args, '--store', store, '--json'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  let json: any;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = undefined;
  }
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json };
}

/** Run and expect success; returns parsed JSON. */
export function vmdnOk(store: string, args: string[]): any {
  const r = vmdn(store, args);
  if (r.status !== 0) throw new Error(`vmdn ${args.join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`);
  return r.json;
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
}

/** `qemu-img compare` exit 0 = identical. */
export function qemuCompare(a: string, b: string): { identical: boolean; out: string } {
  const r = spawnSync('qemu-img', ['compare', a, b], { encoding: 'utf8' });
  return { identical: r.status === 0, out: r.stdout + r.stderr };
}

export interface Run {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Start `vmdn ARGS --store STORE --json` without waiting; `output()` is what it printed so far. */
export function vmdnStart(store: string, args: string[]): { child: ChildProcess; done: Promise<Run>; output: () => { stdout: string; stderr: string } } {
  const child = spawn(process.execPath, [CLI, ...args, '--store', store, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b) => (stdout += b));
  child.stderr!.on('data', (b) => (stderr += b));
  const done = new Promise<Run>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done, output: () => ({ stdout, stderr }) };
}

/** Run `vmdn ARGS` asynchronously (others can run beside it). */
export const vmdnAsync = (store: string, args: string[]): Promise<Run> => vmdnStart(store, args).done;

/** Poll `cond` every 20 ms until it holds; fails after `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  for (const t0 = Date.now(); !cond(); await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
  }
}
