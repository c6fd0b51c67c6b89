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

/** Peak RSS of a live process (VmHWM), bytes; NaN once it is gone. */
export function peakRssOf(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Start `vmdn serve|edge ... --listen HOST:0` and wait for its start line with the URL.
 * `wrap` prefixes the command (e.g. `ip netns exec NS`, which execs in place: the pid stays vmdn's).
 */
export async function startVmdn(args: string[], o: { host?: string; wrap?: string[] } = {}): Promise<Server> {
  const argv = [...(o.wrap ?? []), process.execPath, VMDN, ...args, '--listen', `${o.host ?? '127.0.0.1'}:0`];
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /(http:\/\/\d+\.\d+\.\d+\.\d+:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`vmdn ${args[0]} exited ${code}: ${err}`)));
  });
  return {
    url,
    pid: child.pid!,
    stats: async () => (await (await fetch(`${url}/stats`)).json()) as Record<string, number>,
    peakRss: () => peakRssOf(child.pid!),
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}
