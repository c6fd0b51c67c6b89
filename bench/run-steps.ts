/**
 * The timed steps of `npm run bench` (run.ts): a tool or a vmdn command run
 * with the page cache dropped first when asked, its time and peak RSS kept as
 * a Step, its failure logged as a problem of the run.
 */
import { promises as fsp } from 'node:fs';
import type { StoreStats } from '../src/images/maintenance.js';
import { dropCaches as dropPageCache, timed, type Timed } from './measure.js';
import type { RunSettings } from './run-settings.js';
import type { ImportStats, Step } from './types.js';

/** What the parts of a run share. */
export interface BenchRun {
  steps: StepRunner;
  settings: RunSettings;
  /** The corpus directory (scripts/corpus.sh). */
  corpus: string;
  /** When the time budget runs out (ms since the epoch). */
  deadline: number;
}

/** `vmdn stats --json`: the store's totals (the ratios beside them are not read). */
export type StatsJson = StoreStats;
/** `vmdn import --json`. */
export interface ImportJson {
  ref: string;
  manifest: string;
  stats: ImportStats;
  seconds: number;
}

export class StepRunner {
  readonly problems: string[] = [];
  /** The peak RSS of every vmdn command so far, and which command it was. */
  maxVmdnRss = 0;
  maxVmdnRssCmd = '';
  cachesDroppedEver = false;
  cachesDropFailed = false;

  /**
   * `t0`: the run's start, for the log's clock; `vmdnCli`: the vmdn CLI under
   * test (run.ts swaps in a private copy of the build, snapshotVmdn).
   */
  constructor(private readonly t0: number, private readonly workDir: string, readonly wantDrop: boolean, public vmdnCli: string) {}

  // arrow functions: callers take them out of the runner (const { log, problem } = steps)
  readonly log = (msg: string): void => {
    const s = Math.round((Date.now() - this.t0) / 1000);
    process.stderr.write(`[bench +${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}] ${msg}\n`);
  };

  readonly problem = (msg: string): void => {
    this.problems.push(msg);
    this.log(`PROBLEM: ${msg}`);
  };

  dropCaches(): boolean {
    if (!this.wantDrop) return false;
    const ok = dropPageCache();
    if (ok) this.cachesDroppedEver = true;
    else this.cachesDropFailed = true;
    return ok;
  }

  async tool(cmd: string, args: string[], opts: { drop?: boolean; timeoutMs?: number } = {}): Promise<Step> {
    const dropped = opts.drop ? this.dropCaches() : false;
    const t = await timed(cmd, args, { tmpDir: this.workDir, timeoutMs: opts.timeoutMs ?? 30 * 60_000 });
    const s = toStep(t, dropped);
    if (!s.ok) this.problem(`${t.cmd}: ${s.error}`);
    return s;
  }

  /** Runs `vmdn ARGS --json --no-progress` timed; returns the step and the parsed JSON document. */
  async vmdn<T = unknown>(args: string[], opts: { drop?: boolean; timeoutMs?: number; retry?: boolean } = {}): Promise<{ step: Step; json?: T }> {
    if (opts.retry) {
      const first = await this.vmdn<T>(args, { ...opts, retry: false });
      if (first.step.ok) return first;
      this.log(`retrying ${first.step.cmd}`);
      return this.vmdn<T>(args, { ...opts, retry: false });
    }
    const dropped = opts.drop ? this.dropCaches() : false;
    const t = await timed(process.execPath, [this.vmdnCli, ...args, '--json', '--no-progress'], { tmpDir: this.workDir, timeoutMs: opts.timeoutMs ?? 30 * 60_000 });
    let json: T | undefined;
    try {
      json = JSON.parse(t.stdout) as T;
    } catch {
      /* reported via the step's error */
    }
    const step = toStep(t, dropped, json);
    step.cmd = `vmdn ${args.join(' ')}`;
    if (step.ok && json === undefined) {
      step.ok = false;
      step.error = `no JSON on stdout: ${t.stdout.slice(0, 200)}`;
    }
    if (Number.isFinite(t.maxRssBytes) && t.maxRssBytes > this.maxVmdnRss) {
      this.maxVmdnRss = t.maxRssBytes;
      this.maxVmdnRssCmd = step.cmd;
    }
    if (!step.ok) this.problem(`${step.cmd}: ${step.error}`);
    return { step, json: step.ok ? json : undefined };
  }
}

function errorOf(t: Timed, json: unknown): string | undefined {
  if (t.timedOut) return 'timed out (killed)';
  if (t.exitCode === 0) return undefined;
  const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
  if (e) return `exit ${t.exitCode}: ${e.code ?? ''} ${e.message ?? ''}`.trim();
  const lines = t.stderrTail.trim().split('\n');
  const first = lines.find((l) => /error/i.test(l) && !/^\s+at /.test(l));
  return `exit ${t.exitCode}: ${first ? `${first.trim()} | ` : ''}${lines.slice(-3).join(' | ')}`;
}

function toStep(t: Timed, cachesDropped: boolean, json?: unknown): Step {
  const error = errorOf(t, json);
  return { cmd: t.cmd, ok: !error, seconds: t.seconds, maxRssBytes: t.maxRssBytes, exitCode: t.exitCode, cachesDropped, ...(error ? { error } : {}) };
}

export async function rmrf(p: string): Promise<void> {
  await fsp.rm(p, { recursive: true, force: true, maxRetries: 3 });
}
