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
  private readonly pending = new Map<number, Pending & { worker: number }>();
  private nextId = 1;

  constructor(size = Math.max(1, Math.min(4, os.availableParallelism()))) {
    const url = new URL('./codec-worker.js', import.meta.url);
    for (let i = 0; i < size; i++) {
      const w = new Worker(url);
      w.unref();
      w.on('message', (res: CodecResponse) => this.settle(res));
      w.on('error', (err) => this.failWorker(i, err));
      this.workers.push(w);
      this.load.push(0);
    }
  }

  get size(): number {
    return this.workers.length;
  }

  run(req: DistributiveOmit<CodecRequest, 'id'>, transfer: ArrayBuffer[] = []): Promise<CodecResponse & { ok: true }> {
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
      p.reject(new VmdnError('E_INTERNAL', `codec worker failed: ${err.message}`, {}, { cause: err }));
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
