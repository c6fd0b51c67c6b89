/** Child processes for the network benchmark: vmdn origin/edge servers, their stats and peak RSS. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, fs.existsSync(path.resolve(here, '../../package.json')) ? '../..' : '..');
export const VMDN = path.join(REPO, 'bin', 'vmdn.js');

export interface Server {
  url: string;
  pid: number;
  stats(): Promise<Record<string, number>>;
  /** Peak RSS of the process so far (VmHWM), bytes. */
  peakRss(): number;
  stop(): Promise<void>;
}

/** Start `vmdn serve|edge ... --listen 127.0.0.1:0` and wait for its start line with the URL. */
export async function startVmdn(args: string[]): Promise<Server> {
  const child: ChildProcess = spawn(process.execPath, [VMDN, ...args, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /(http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`vmdn ${args[0]} exited ${code}: ${err}`)));
  });
  return {
    url,
    pid: child.pid!,
    stats: async () => (await (await fetch(`${url}/stats`)).json()) as Record<string, number>,
    peakRss: () => {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : NaN;
    },
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
