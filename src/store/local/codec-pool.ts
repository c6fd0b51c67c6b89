/**
 * A small pool of codec workers. Import hashes and chunks on the main thread
 * while workers compress and write; export reads, decompresses and verifies in
 * workers while the main thread writes the image. On a 2-core machine this is
 * what lets vmdn outrun single-threaded tools.
 */
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import type { CodecRequest, CodecResponse } from './codec-worker.js';
import { VmdnError, type ErrorCode } from '../../errors.js';

type Pending = { resolve: (r: CodecResponse & { ok: true }) => void; reject: (e: Error) => void };
type DistributiveOmit<T, K extends keyof any> = T extends unknown ? Omit<T, K> : never;

export class CodecPool {
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private online = 0;
  private readonly pending = new Map<number, Pending & { worker: number }>();
  private nextId = 1;
  private closed = false;
  /** Why a worker could not even start: every request fails with it. */
  private broken: Error | undefined;

  constructor(size = Math.max(1, Math.min(4, os.availableParallelism()))) {
    for (let i = 0; i < size; i++) {
      this.workers.push(this.spawn(i));
      this.load.push(0);
    }
  }

  /**
   * Worker `i`. Its requests fail only once it has exited (its thread no longer runs, so it
   * writes into no caller's memory: slab-reads.ts frees slots on failure), and a worker that
   * died is replaced: requests sent to a dead one would wait forever.
   */
  private spawn(i: number): Worker {
    const w = new Worker(new URL('./codec-worker.js', import.meta.url));
    w.unref();
    let failure: Error | undefined;
    let online = false;
    w.on('online', () => {
      online = true;
      this.online++;
    });
    w.on('message', (res: CodecResponse) => this.settle(res));
    w.on('error', (err) => (failure = err));
    w.on('exit', (code) => {
      if (this.workers[i] !== w) return;
      const err = failure ?? new Error(this.closed ? 'codec pool closed' : `exited with code ${code}`);
      // one that never started would fail again at once: no respawning in a loop, the pool is broken
      if (!online) this.broken ??= err;
      this.failWorker(i, err);
      if (!this.closed && online) this.workers[i] = this.spawn(i);
    });
    return w;
  }

  /** Whether every worker has started (one spawned later to replace a dead one counts again). */
  get ready(): boolean {
    return this.online >= this.workers.length;
  }

  get size(): number {
    return this.workers.length;
  }

  run(req: DistributiveOmit<CodecRequest, 'id'>, transfer: ArrayBuffer[] = []): Promise<CodecResponse & { ok: true }> {
    if (this.closed || this.broken) return Promise.reject(new VmdnError('E_INTERNAL', this.broken ? `codec worker failed: ${this.broken.message}` : 'codec pool closed'));
    const id = this.nextId++;
    // least-loaded worker keeps both cores busy even when object sizes vary
    let w = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.load[i]! < this.load[w]!) w = i;
    this.load[w]!++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker: w });
      this.workers[w]!.postMessage({ ...req, id }, transfer);
    });
  }

  /** Run one request on every worker (e.g. to release per-worker file handles). */
  async broadcast(req: DistributiveOmit<CodecRequest, 'id'>): Promise<void> {
    await Promise.all(
      this.workers.map((w, i) => {
        const id = this.nextId++;
        this.load[i]!++;
        return new Promise((resolve, reject) => {
          this.pending.set(id, { resolve, reject, worker: i });
          w.postMessage({ ...req, id });
        });
      }),
    );
  }

  private settle(res: CodecResponse): void {
    const p = this.pending.get(res.id);
    if (!p) return;
    this.pending.delete(res.id);
    this.load[p.worker]!--;
    if (res.ok) p.resolve(res);
    else p.reject(new VmdnError(res.error.code as ErrorCode, res.error.message, res.error.data));
  }

  private failWorker(index: number, err: Error): void {
    for (const [id, p] of this.pending) {
      if (p.worker !== index) continue;
      this.pending.delete(id);
      this.load[index]!--;
      p.reject(new VmdnError('E_INTERNAL', `codec worker failed: ${err.message}`, {}, { cause: err }));
    }
  }

  /** Stops the workers; requests still pending fail once their worker has exited (they never settled before). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    for (let i = 0; i < this.workers.length; i++) this.failWorker(i, new Error('codec pool closed'));
    this.workers.length = 0;
  }
}
