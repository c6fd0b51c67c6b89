/**
 * Chunks strategy, assemble side: rebuild a disk from its manifest, fetching
 * objects with bounded read-ahead (decoded and verified in codec workers or by
 * the remote store) while writing strictly in order.
 */
import type { DiskWriter } from '../../container/disk.js';
import { canCopyToFile, type CopyToFile, type ReadableStore } from '../../store/types.js';
import type { Manifest } from '../../model/manifest.js';
import { throttle, type OnProgress } from '../../util/progress.js';
import { VmdnError } from '../../errors.js';

export interface AssembleOptions {
  signal?: AbortSignal;
  onProgress?: OnProgress;
  /** Objects fetched ahead of the writer. */
  readAhead?: number;
}

export async function assembleChunks(manifest: Manifest, store: ReadableStore, writer: DiskWriter, opts: AssembleOptions = {}): Promise<{ bytesWritten: number }> {
  if (writer.directTarget && canCopyToFile(store)) return assembleDirect(manifest, store, writer, writer.directTarget, opts);
  const { signal } = opts;
  const readAhead = Math.max(1, opts.readAhead ?? 32);
  const progress = throttle(opts.onProgress);
  const chunks = manifest.chunks;
  const total = chunks.reduce((n, c) => n + c[1], 0);
  const window: Array<Promise<Uint8Array>> = [];
  let next = 0;
  const fill = () => {
    while (next < chunks.length && window.length < readAhead) {
      const p = store.get(chunks[next]![2], { signal });
      p.catch(() => {}); // surfaced when awaited in order
      window.push(p);
      next++;
    }
  };
  let done = 0;
  try {
    for (let i = 0; i < chunks.length; i++) {
      signal?.throwIfAborted();
      fill();
      const data = await window.shift()!;
      const [offset, length, digest] = chunks[i]!;
      if (data.length !== length) {
        throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${data.length} bytes, manifest says ${length}`, { digest });
      }
      await writer.write(offset, data);
      done += length;
      progress?.({ phase: 'export', done, total, unit: 'bytes' });
    }
    await writer.finish();
  } catch (err) {
    await writer.abort().catch(() => {});
    throw err;
  }
  return { bytesWritten: done };
}

/**
 * Fast path: workers decode, verify and pwrite each object into the output
 * file themselves, in any order; the main thread only schedules.
 */
async function assembleDirect(manifest: Manifest, store: CopyToFile, writer: DiskWriter, target: string, opts: AssembleOptions): Promise<{ bytesWritten: number }> {
  const { signal } = opts;
  const concurrency = Math.max(1, opts.readAhead ?? 32);
  const progress = throttle(opts.onProgress);
  const chunks = manifest.chunks;
  const total = chunks.reduce((n, c) => n + c[1], 0);
  let done = 0;
  let next = 0;
  const worker = async () => {
    while (next < chunks.length) {
      signal?.throwIfAborted();
      const [offset, length, digest] = chunks[next++]!;
      const n = await store.copyTo(digest, target, offset);
      if (n !== length) throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${n} bytes, manifest says ${length}`, { digest });
      done += length;
      progress?.({ phase: 'export', done, total, unit: 'bytes' });
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
    await store.releaseTarget(target);
    await writer.finish();
  } catch (err) {
    await store.releaseTarget(target).catch(() => {});
    await writer.abort().catch(() => {});
    throw err;
  }
  return { bytesWritten: done };
}
