/** Everything the CLI prints goes through here: tables, JSON, progress, errors. */
import type cliProgress from 'cli-progress';
import { createRequire } from 'node:module';
import type { OnProgress } from '../util/progress.js';
import { asVmdnError, ERROR_CODES } from '../errors.js';
import { escapeText } from '../inspect/display.js';

/** For human output: paths, labels and messages are data, so control and bidi characters are escaped (never in --json). */
export function safe(s: string): string {
  return escapeText(s);
}
import { humanBytes } from '../util/size.js';

export interface GlobalOptions {
  store?: string;
  json?: boolean;
  progress?: boolean;
}


/** Left-aligned first column, right-aligned numbers. */
export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  return cells
    .map((r) => r.map((v, c) => (c === 0 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!))).join('  ').trimEnd())
    .join('\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** A progress bar on stderr when it is a terminal and output is for humans; otherwise nothing. */
export function progressBar(opts: GlobalOptions, label: string): { onProgress?: OnProgress; stop: () => void } {
  if (opts.json || opts.progress === false || !process.stderr.isTTY) return { stop: () => {} };
  let bar: cliProgress.SingleBar | null = null;
  return {
    onProgress: (e) => {
      if (!bar) {
        const fmt = e.unit === 'bytes'
          ? `${label} [{bar}] {percentage}% | {doneH} / {totalH} | {speed} | eta {eta_formatted}`
          : `${label} [{bar}] {percentage}% | {value}/{total} objects | eta {eta_formatted}`;
        // loaded only when a bar is drawn: ~20 ms of every command's start otherwise (--no-progress, pipes)
        const bars = createRequire(import.meta.url)('cli-progress') as typeof cliProgress;
        bar = new bars.SingleBar({ format: fmt, stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 50 }, bars.Presets.shades_classic);
        bar.start(e.total, 0, { doneH: humanBytes(0), totalH: humanBytes(e.total), speed: '' });
        (bar as unknown as { t0: number }).t0 = Date.now();
      }
      const secs = (Date.now() - (bar as unknown as { t0: number }).t0) / 1000;
      bar.setTotal(e.total);
      bar.update(e.done, { doneH: humanBytes(e.done), totalH: humanBytes(e.total), speed: secs > 0 ? `${humanBytes(e.done / secs)}/s` : '' });
    },
    stop: () => bar?.stop(),
  };
}

/** The one place errors become messages and exit codes. */
export function reportError(err: unknown, json: boolean): number {
  const e = asVmdnError(err);
  if (json) {
    process.stdout.write(JSON.stringify({ error: e.toJSON() }, null, 2) + '\n');
  } else {
    process.stderr.write(`vmdn: error [${e.code}]: ${escapeText(e.message)}\n`);
    if (e.code === 'E_INTERNAL' && e.stack) process.stderr.write(`${e.stack}\n`);
  }
  return ERROR_CODES[e.code].exit;
}

/** Exit with process.exitCode once stdout and stderr have taken everything written (bounded: a stuck reader must not hold the exit). */
export function exitWhenFlushed(): void {
  const code = Number(process.exitCode ?? 0);
  const streams = [process.stdout, process.stderr].filter((s) => !s.destroyed && s.writable);
  let left = streams.length;
  const done = () => {
    if (--left <= 0) process.exit(code);
  };
  if (left === 0) process.exit(code);
  setTimeout(() => process.exit(code), 10_000).unref();
  for (const s of streams) s.write('', done);
}
