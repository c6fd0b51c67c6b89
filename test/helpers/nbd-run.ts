/** A `vmdn nbd ... --json` child for interop tests: the listening document, then the counters lines as they come. */
import { spawnSync } from 'node:child_process';
import { vmdnStart, waitFor } from './cli.js';

export async function startNbd(store: string, args: string[], env: Record<string, string> = {}) {
  Object.assign(process.env, env);
  const run = vmdnStart(store, ['nbd', ...args]);
  for (const k of Object.keys(env)) delete process.env[k];
  let exited = false;
  run.done.then(() => (exited = true));
  await waitFor(() => exited || /^\}$/m.test(run.output().stdout), 30_000, 'vmdn nbd to listen');
  if (exited) throw new Error(`vmdn nbd exited: ${run.output().stderr}`);
  const lines = (event: string) => run.output().stdout.split('\n').filter((l) => l.startsWith(`{"event":"${event}"`)).map((l) => JSON.parse(l));
  const counters = () => lines('counters');
  return {
    ...run,
    counters,
    lines,
    /** The listening document. */
    doc: () => JSON.parse(run.output().stdout.slice(0, run.output().stdout.indexOf('\n}\n') + 2)),
    last: () => counters().at(-1) ?? {},
    alive: () => run.child.exitCode === null && run.child.signalCode === null,
    /** SIGTERM; a server still there 15 s later is killed and the test fails (never a hung run). */
    stop: async () => {
      run.child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), 15_000)));
      const r = await Promise.race([run.done, late]);
      clearTimeout(timer);
      if (r === 'late') {
        run.child.kill('SIGKILL');
        throw new Error('vmdn nbd did not stop within 15 s of SIGTERM');
      }
      return r;
    },
  };
}

export function qemuIo(uri: string, cmds: string[]): { status: number; out: string; ms: number } {
  const t0 = Date.now();
  const r = spawnSync('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), uri], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status ?? -1, out: r.stdout + r.stderr, ms: Date.now() - t0 };
}
