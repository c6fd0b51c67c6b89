/**
 * Pack compression off the server's event loop: zstd at pack levels takes
 * seconds for a few MiB, and an origin must keep answering meanwhile.
 */
import { parentPort, Worker } from 'node:worker_threads';
import { encodePack, type PackObject } from '../wire/pack.js';
import { VmdnError } from '../../errors.js';

interface PackJob {
  id: number;
  objects: PackObject[];
  refs: Uint8Array[];
}
type PackDone = { id: number; ok: true; frame: Uint8Array } | { id: number; ok: false; message: string };

parentPort?.on('message', (job: PackJob) => {
  try {
    const frame = encodePack(job.objects, job.refs);
    parentPort!.postMessage({ id: job.id, ok: true, frame } satisfies PackDone, [frame.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort!.postMessage({ id: job.id, ok: false, message: (err as Error).message } satisfies PackDone);
  }
});

/** One worker, started on first use; jobs queue in order. */
export class PackCompressor {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (f: Uint8Array) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  compress(objects: PackObject[], refs: Uint8Array[]): Promise<Uint8Array> {
    if (!this.worker) {
      this.worker = new Worker(new URL('./pack-worker.js', import.meta.url));
      this.worker.unref();
      this.worker.on('message', (r: PackDone) => {
        const p = this.pending.get(r.id);
        this.pending.delete(r.id);
        if (r.ok) p?.resolve(r.frame);
        else p?.reject(new VmdnError('E_INTERNAL', `pack compression failed: ${r.message}`));
      });
      this.worker.on('error', (err) => {
        for (const p of this.pending.values()) p.reject(new VmdnError('E_INTERNAL', `pack worker failed: ${err.message}`, {}, { cause: err }));
        this.pending.clear();
        this.worker = undefined;
      });
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker!.postMessage({ id, objects, refs } satisfies PackJob);
    });
  }

  async close(): Promise<void> {
    await this.worker?.terminate();
    this.worker = undefined;
  }
}
