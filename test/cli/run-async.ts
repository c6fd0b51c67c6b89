/**
 * Run the real CLI without blocking this process (an in-process origin must
 * keep answering), with a time bound: a command that hangs is killed and
 * reported as `timedOut`, so a hang fails the test instead of stalling it.
 */
import { spawn } from 'node:child_process';
import { CLI } from '../helpers/cli.js';

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  seconds: number;
  json: any;
}

export function runCli(args: string[], opts: { timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      let json: any;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ status, stdout, stderr, timedOut, seconds: (Date.now() - t0) / 1000, json });
    });
  });
}
