/**
 * The store's reader/writer lock across processes, kept in the index's
 * `leases` table. Writers (import, pull, an origin receiving a push, rm,
 * verify) share it; gc holds it alone. gc deletes what no image names, and a
 * writer's objects are unnamed until its last step: without the lock gc
 * deleted objects an import had just deduplicated against.
 *
 * A request is a row; its id is its place in line. A writer is granted once
 * no gc row precedes it, gc once no row at all precedes it: grants are in
 * order of request, so a gc loop cannot starve writers nor writers gc.
 * Release deletes the row. A row whose process is gone (SIGKILL, crash, pid
 * reused since) is deleted by whoever waits on it, so a dead process never
 * leaves the store locked. Processes on other hosts are not told apart: one
 * store directory belongs to one host.
 */
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LeaseKind, LeaseRow, StoreIndex } from './sqlite-index.js';

export type { LeaseKind, LeaseRow };
import { asVmdnError } from '../../errors.js';

export interface LeaseOptions {
  signal?: AbortSignal;
  /** Told once per change of what the request waits for (default: a line on stderr). */
  onWait?: (message: string) => void;
  /** Longest pause between checks, ms. */
  maxPollMs?: number;
}

/** Wait for the lease of `kind` on the store whose index is `index`; resolves to its release. */
export async function acquireLease(index: StoreIndex, dir: string, kind: LeaseKind, opts: LeaseOptions = {}): Promise<() => void> {
  opts.signal?.throwIfAborted();
  const id = index.addLease(kind, process.pid, procStat(process.pid)?.start ?? '');
  const onWait = opts.onWait ?? ((m: string) => process.stderr.write(`${m}\n`));
  let told = '';
  let pause = 10;
  try {
    for (;;) {
      const ahead = index.leasesBefore(id).filter((r) => kind === 'gc' || r.kind === 'gc');
      const dead = ahead.filter((r) => !isAlive(r));
      index.dropLeases(dead.map((r) => r.id));
      const live = ahead.filter((r) => !dead.includes(r));
      if (live.length === 0) return once(() => index.dropLeases([id]));
      const message = waitMessage(kind, live, dir);
      if (message !== told) onWait((told = message));
      await sleep(pause, undefined, { signal: opts.signal });
      pause = Math.min(pause * 1.5, opts.maxPollMs ?? 250);
    }
  } catch (err) {
    try {
      index.dropLeases([id]);
    } catch {
      /* the row dies with this process */
    }
    throw asVmdnError(err);
  }
}

/** One store object's leases: its overlapping writes share one row; close() drops what is still held. */
export class StoreLeases {
  private shared: { count: number; ready: Promise<() => void> } | undefined;
  private readonly held = new Set<() => void>();

  constructor(private readonly index: StoreIndex, private readonly dir: string, private readonly opts: Omit<LeaseOptions, 'signal'> = {}) {}

  async writing<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (!this.shared) {
      const ready = this.acquire('write', signal);
      const s = (this.shared = { count: 0, ready });
      ready.catch(() => {
        if (this.shared === s) this.shared = undefined;
      });
    }
    const s = this.shared;
    s.count++;
    let release: () => void;
    try {
      release = await s.ready;
    } catch (err) {
      s.count--;
      throw err;
    }
    try {
      return await fn();
    } finally {
      if (--s.count === 0 && this.shared === s) {
        this.shared = undefined;
        this.release(release);
      }
    }
  }

  async exclusive<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire('gc', signal);
    try {
      return await fn();
    } finally {
      this.release(release);
    }
  }

  releaseAll(): void {
    for (const release of [...this.held]) this.release(release);
  }

  private async acquire(kind: LeaseKind, signal?: AbortSignal): Promise<() => void> {
    const release = await acquireLease(this.index, this.dir, kind, { ...this.opts, signal });
    this.held.add(release);
    return release;
  }

  private release(release: () => void): void {
    this.held.delete(release);
    release();
  }
}

function waitMessage(kind: LeaseKind, live: LeaseRow[], dir: string): string {
  const gcs = live.filter((r) => r.kind === 'gc');
  const pids = (rows: LeaseRow[]) => [...new Set(rows.map((r) => r.pid))].join(', ');
  if (kind === 'write' || live.length === gcs.length) return `waiting for gc to finish in ${dir} (pid ${pids(gcs)})...`;
  const writers = live.filter((r) => r.kind === 'write');
  return `waiting for ${writers.length} writer${writers.length === 1 ? '' : 's'} to finish in ${dir} (pid ${pids(writers)})...`;
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}

/** Whether the process that asked for `row` still runs (a zombie does not; nor a new process under its pid). */
export function isAlive(row: Pick<LeaseRow, 'pid' | 'procStart'>): boolean {
  try {
    process.kill(row.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const st = procStat(row.pid);
  // no stat file: gone since the kill above, or a system without /proc
  if (!st) return !fs.existsSync('/proc/self/stat');
  return st.state !== 'Z' && st.state !== 'X' && (row.procStart === '' || row.procStart === st.start);
}

/** State and start time (clock ticks since boot) from /proc/PID/stat; undefined where there is no /proc. */
function procStat(pid: number): { state: string; start: string } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // the command name (field 2) may hold spaces and parentheses: fields after the last ')' are fixed
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: f[0] ?? '', start: f[19] ?? '' };
}
