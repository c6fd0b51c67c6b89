/**
 * Pack building off the server's event loop: zstd at pack levels takes
 * seconds for a few MiB, and an origin must keep answering meanwhile. The
 * worker also reads, decodes and verifies the objects itself, so a pack's
 * tens of MiB live in this one thread, collected after each job, instead of
 * being copied through the main thread and the store's codec workers.
 */
import fs from 'node:fs';
import { parentPort, Worker } from 'node:worker_threads';
import { encodePack, type BuiltPack, type PackObject, type PackSource } from '../wire/pack.js';
import { decodeObject } from '../../store/codec.js';
import { VmdnError } from '../../errors.js';
import { gcEvery } from '../../util/gc.js';

interface PackJob {
  id: number;
  objects: PackSource[];
  refs: PackSource[];
}
type PackDone = { id: number; ok: true; pack: BuiltPack } | { id: number; ok: false; message: string };

/** Every job: its buffers are garbage once the frame is sent, and V8 would not notice them for hundreds of MiB. */
const collect = gcEvery(1);

/** Read and verify `list`; a file gone meanwhile (eviction, prune) is skipped, or ends the list when `prefix`. */
function load(list: PackSource[], prefix: boolean): PackObject[] {
  const out: PackObject[] = [];
  for (const o of list) {
    let encoded: Uint8Array;
    try {
      encoded = 'encoded' in o ? o.encoded : fs.readFileSync(o.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (prefix) break;
      continue;
    }
    out.push({ digest: o.digest, data: decodeObject(o.digest, encoded, 'store') });
  }
  return out;
}

parentPort?.on('message', (job: PackJob) => {
  try {
    const objects = load(job.objects, false);
    const refs = load(job.refs, true);
    // a buffer of its own to transfer: zstd's output is external memory, which Node 26 refuses to transfer
    const frame = new Uint8Array(encodePack(objects, refs.map((r) => r.data)));
    const pack: BuiltPack = { frame, sent: objects.map((o) => o.digest), refsUsed: refs.length, rawBytes: objects.reduce((n, o) => n + o.data.length, 0) };
    parentPort!.postMessage({ id: job.id, ok: true, pack } satisfies PackDone, [frame.buffer as ArrayBuffer]);
  } catch (err) {
    parentPort!.postMessage({ id: job.id, ok: false, message: (err as Error).message } satisfies PackDone);
  }
  collect(1);
});

/** One worker, started on first use; jobs queue in order. */
export class PackBuilder {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (p: BuiltPack) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  build(objects: PackSource[], refs: PackSource[]): Promise<BuiltPack> {
    if (!this.worker) {
      this.worker = new Worker(new URL('./pack-worker.js', import.meta.url));
      this.worker.unref();
      this.worker.on('message', (r: PackDone) => {
        const p = this.pending.get(r.id);
        this.pending.delete(r.id);
        if (r.ok) p?.resolve(r.pack);
        else p?.reject(new VmdnError('E_INTERNAL', `pack building failed: ${r.message}`));
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
