/**
 * The floor under `vmdn export NAME out.raw` from a local store (issue 14):
 * what the work that cannot be skipped costs on this machine, without the
 * store, the index, the CLI or any message per object.
 *
 *   node dist/bench/export-floor.js STORE NAME [OUT_DIR]
 *
 * 1. decode + SHA-256 verify of every chunk of the image, encoded bytes already
 *    in memory, on one thread: core-seconds (and each half alone);
 * 2. the same plus the writes (all-zero 4 KiB blocks skipped, as export does)
 *    into a fresh file by 1 and 2 threads taking ~4 MiB batches in turn: wall
 *    and CPU of the copy alone, then the fdatasync that makes it durable.
 *
 * CPU is the process's (all threads), so run it on a quiet machine, or read
 * the CPU columns only.
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { decodeObjectInto } from '../src/store/codec.js';
import { sha256 } from '../src/store/digest.js';
import { writeSparseSync } from '../src/store/local/read-runs.js';

const BATCH = 4 << 20;

interface Job {
  encoded: SharedArrayBuffer;
  /** Per chunk: offset in `encoded`, encoded length, output offset, decoded length. */
  meta: SharedArrayBuffer;
  digests: string[];
  batches: number[][];
  out: string;
  next: SharedArrayBuffer;
}

function cpuSince(c0: NodeJS.CpuUsage): { user: number; sys: number } {
  const c = process.cpuUsage(c0);
  return { user: c.user / 1e6, sys: c.system / 1e6 };
}

async function main(): Promise<void> {
  const [storeDir, name, outDir = os.tmpdir()] = process.argv.slice(2);
  if (!storeDir || !name) throw new Error('usage: export-floor STORE NAME [OUT_DIR]');
  // imported here, not at the top: the store's modules start a codec worker's message handler in any worker thread
  const { LocalStore } = await import('../src/store/local/local-store.js');
  const { resolveImage } = await import('../src/images/names.js');
  const { parseImageRef } = await import('../src/store/image-name.js');
  const store = await LocalStore.open(storeDir, { workers: 0 });
  const { manifest } = await resolveImage(store, parseImageRef(name));
  const chunks = manifest.chunks;
  const enc: Uint8Array[] = [];
  for (const c of chunks) enc.push(await store.getEncoded(c[2]));
  await store.close();
  const data = chunks.reduce((n, c) => n + c[1], 0);
  const stored = enc.reduce((n, e) => n + e.length, 0);
  console.log(`${name}: ${chunks.length} chunks (${new Set(chunks.map((c) => c[2])).size} distinct), ${data} bytes decoded, ${stored} encoded; load ${os.loadavg()[0].toFixed(2)}`);

  // 1. one thread, from memory
  const out = Buffer.allocUnsafe(Math.max(...chunks.map((c) => c[1])));
  const dctx = new (createRequire(import.meta.url)('zstd-napi/binding.js').DCtx)();
  const time = (fn: () => void) => {
    const c0 = process.cpuUsage();
    fn();
    const c = cpuSince(c0);
    return c.user + c.sys;
  };
  for (let r = 0; r < 3; r++) {
    const dec = time(() => chunks.forEach((c, i) => dctx.decompress(out.subarray(0, c[1]), enc[i]!)));
    const hash = time(() => chunks.forEach((c) => sha256(out.subarray(0, c[1]))));
    const both = time(() => chunks.forEach((c, i) => decodeObjectInto(c[2], enc[i]!, out.subarray(0, c[1]))));
    console.log(`1 thread: zstd ${dec.toFixed(3)} s (${(data / dec / 1e9).toFixed(2)} GB/s), sha256 ${hash.toFixed(3)} s (${(data / hash / 1e9).toFixed(2)} GB/s), decode + verify ${both.toFixed(3)} core-s`);
  }

  // 2. decode + verify + write by 1 and 2 threads
  const encoded = new SharedArrayBuffer(stored);
  const all = Buffer.from(encoded);
  const meta = new Float64Array(new SharedArrayBuffer(chunks.length * 4 * 8));
  let at = 0;
  enc.forEach((e, i) => {
    all.set(e, at);
    meta.set([at, e.length, chunks[i]![0], chunks[i]![1]], i * 4);
    at += e.length;
  });
  const batches: number[][] = [[]];
  let size = 0;
  chunks.forEach((c, i) => {
    if (batches.at(-1)!.length > 0 && size + c[1] > BATCH) {
      batches.push([]);
      size = 0;
    }
    batches.at(-1)!.push(i);
    size += c[1];
  });
  const file = path.join(outDir, `export-floor-${process.pid}.raw`);
  for (const threads of [1, 2, 2]) {
    fs.rmSync(file, { force: true });
    fs.closeSync(fs.openSync(file, 'w'));
    const job: Job = { encoded, meta: meta.buffer as SharedArrayBuffer, digests: chunks.map((c) => c[2]), batches, out: file, next: new SharedArrayBuffer(4) };
    const ws = Array.from({ length: threads }, () => new Worker(new URL(import.meta.url), { workerData: job }));
    await Promise.all(ws.map((w) => new Promise((r) => w.once('message', r))));
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (const w of ws) w.postMessage('go');
    await Promise.all(ws.map((w) => new Promise((r) => w.once('message', r))));
    const t1 = performance.now();
    const c = cpuSince(c0);
    const fd = fs.openSync(file, 'r+');
    fs.fdatasyncSync(fd);
    fs.closeSync(fd);
    const t2 = performance.now();
    console.log(`${threads} thread(s): decode + verify + write ${((t1 - t0) / 1000).toFixed(3)} s wall, user ${c.user.toFixed(3)} sys ${c.sys.toFixed(3)}; then fdatasync ${((t2 - t1) / 1000).toFixed(3)} s`);
    await Promise.all(ws.map((w) => w.terminate()));
  }
  fs.rmSync(file, { force: true });
}

/** A copy thread: batches taken in turn, each decoded into one run buffer (written per contiguous stretch). */
function copier(job: Job): void {
  const all = Buffer.from(job.encoded);
  const meta = new Float64Array(job.meta);
  const next = new Int32Array(job.next);
  let run = Buffer.allocUnsafe(BATCH);
  parentPort!.postMessage('ready');
  parentPort!.once('message', () => {
    const fd = fs.openSync(job.out, 'r+');
    for (let b = Atomics.add(next, 0, 1); b < job.batches.length; b = Atomics.add(next, 0, 1)) {
      let len = 0;
      let start = -1;
      for (const i of job.batches[b]!) {
        const [encAt, encLen, off, n] = [meta[i * 4]!, meta[i * 4 + 1]!, meta[i * 4 + 2]!, meta[i * 4 + 3]!];
        if (start >= 0 && off !== start + len) {
          writeSparseSync(fd, run, len, start);
          len = 0;
          start = -1;
        }
        if (start < 0) start = off;
        if (len + n > run.length) run = Buffer.concat([run.subarray(0, len), Buffer.allocUnsafe(n)]);
        decodeObjectInto(job.digests[i]!, all.subarray(encAt, encAt + encLen), run.subarray(len, len + n));
        len += n;
      }
      if (len > 0) writeSparseSync(fd, run, len, start);
    }
    fs.closeSync(fd);
    parentPort!.postMessage('done');
  });
}

if (isMainThread) await main();
else copier(workerData as Job);
