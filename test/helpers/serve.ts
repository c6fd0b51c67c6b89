/** A real `vmdn serve` child for interop tests, resolved once it prints where it listens. */
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from './cli.js';

export interface Served {
  child: ChildProcess;
  url: string;
  port: number;
  /** SIGTERM, resolved when it has exited (at once if it already has). */
  stop: () => Promise<void>;
}

export async function startServe(store: string, opts: { port?: number; env?: NodeJS.ProcessEnv; args?: string[] } = {}): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'serve', '--listen', `127.0.0.1:${opts.port ?? 0}`, '--store', store, '--json', ...(opts.args ?? [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: opts.env ?? process.env,
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b;
      const m = /"url":\s*"([^"]+)"/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`vmdn serve exited ${code}`)));
  });
  const stop = () => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.on('exit', () => resolve());
    child.kill('SIGTERM');
  });
  return { child, url, port: Number(new URL(url).port), stop };
}
