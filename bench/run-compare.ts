/**
 * The compare part of `npm run bench` (run.ts): vmdn against casync and
 * qemu-img on the corpus, in four sections: imports (in delivery order, so
 * the stores grow as they would in use), store sizes, delivery cases, exports.
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { casyncDelivery, checkIndex, chunkCompression, readCaibx, scanCasyncStore, type CaIndex } from './casync.js';
import { dirSize, run } from './measure.js';
import { casesWithin } from './run-settings.js';
import { rmrf, type BenchRun, type ImportJson, type StatsJson } from './run-steps.js';
import type { BenchResults, DeliveryCase, Throughput } from './types.js';
import { vmdnDelivery, vmdnDisk } from './vmdn-store.js';

/** Runs the four sections into `res` (res.images, res.stores, res.delivery). */
export async function runCompare(bench: BenchRun, res: BenchResults): Promise<void> {
  const { steps, corpus } = bench;
  const { images, workDir } = bench.settings;
  const { log, problem } = steps;
  const store = path.join(workDir, 'vmdn-store');
  const rawStore = path.join(workDir, 'vmdn-store-raw');
  const casStore = path.join(workDir, 'casync-store');
  const caibx = (n: string) => path.join(workDir, `${n}.caibx`);
  const results = res.images;

  // 1. imports, in delivery order so the stores grow as they would in use
  for (const name of images) {
    const raw = path.join(corpus, `${name}.raw`);
    const qcow2 = path.join(corpus, `${name}.qcow2`);
    const virtualSize = (await fsp.stat(raw)).size;
    const qcow2FileBytes = (await fsp.stat(qcow2)).size;

    log(`${name}: casync make`);
    const cm = await steps.tool('casync', ['make', `--store=${casStore}`, caibx(name), raw], { drop: true });
    const casAfter = await dirSize(casStore);
    log(`${name}: casync make ${cm.seconds} s, ${(cm.maxRssBytes / 1e6).toFixed(0)} MB RSS`);

    log(`${name}: vmdn import raw`);
    const vr = await steps.vmdn<ImportJson>(['import', raw, '--name', name, '--store', rawStore], { drop: true });
    const rawAfter = await vmdnDisk(rawStore);
    log(`${name}: vmdn import raw ${vr.step.seconds} s, ${(vr.step.maxRssBytes / 1e6).toFixed(0)} MB RSS`);

    log(`${name}: vmdn import qcow2`);
    const vq = await steps.vmdn<ImportJson>(['import', qcow2, '--name', name, '--store', store], { drop: true });
    const qAfter = await vmdnDisk(store);
    const st = await steps.vmdn<StatsJson>(['stats', '--store', store], { retry: true });
    log(`${name}: vmdn import qcow2 ${vq.step.seconds} s, ${(vq.step.maxRssBytes / 1e6).toFixed(0)} MB RSS`);

    const rawAllocated = vr.json?.stats.allocated;
    results.push({
      name,
      virtualSize,
      qcow2FileBytes,
      casyncMake: { ...cm, storeBytesAfter: casAfter.fileBytes, indexBytes: (await fsp.stat(caibx(name)).catch(() => ({ size: 0 }))).size, throughput: throughput(virtualSize, rawAllocated, cm.seconds) },
      vmdnImportRaw: { ...vr.step, storeBytesAfter: rawAfter.total, stats: vr.json?.stats, throughput: throughput(virtualSize, rawAllocated, vr.step.seconds) },
      vmdnImportQcow2: {
        ...vq.step,
        storeBytesAfter: qAfter.total,
        storedBytesAfter: st.json?.storedBytes ?? NaN,
        stats: vq.json?.stats,
        throughput: throughput(virtualSize, vq.json?.stats.allocated, vq.step.seconds),
      },
      importRatioRaw: cm.ok && vr.step.ok ? cm.seconds / vr.step.seconds : NaN,
      importRatioQcow2: cm.ok && vq.step.ok ? cm.seconds / vq.step.seconds : NaN,
    });
  }

  // 2. store sizes
  log('store sizes');
  const casChunks = await scanCasyncStore(casStore).catch((e) => (problem(`casync store scan: ${e}`), new Map<string, number>()));
  const casDisk = await dirSize(casStore);
  const indexes = new Map<string, CaIndex>();
  for (const r of results) {
    try {
      const idx = await readCaibx(caibx(r.name));
      indexes.set(r.name, idx);
      r.caibx = checkIndex(idx, r.virtualSize, casChunks);
      if (!r.caibx.sizeMatches) problem(`${r.name}.caibx: chunks end at ${idx.blobSize}, image is ${r.virtualSize} bytes`);
      if (r.caibx.missingChunks) problem(`${r.name}.caibx: ${r.caibx.missingChunks} chunk ids have no .cacnk file in the casync store`);
    } catch (e) {
      problem(`parsing ${r.name}.caibx: ${(e as Error).message}`);
    }
  }
  const vStats = await steps.vmdn<StatsJson>(['stats', '--store', store], { retry: true });
  const rStats = await steps.vmdn<StatsJson>(['stats', '--store', rawStore], { retry: true });
  const firstChunk = casChunks.keys().next();
  const caIndexBytes = [...indexes.values()].reduce((n, i) => n + i.fileBytes, 0);
  const casChunkBytes = [...casChunks.values()].reduce((a, b) => a + b, 0);
  if (vStats.json) {
    res.stores = {
      vmdn: { ...pick(vStats.json), disk: await vmdnDisk(store) },
      vmdnRaw: rStats.json ? { objects: rStats.json.objects, storedBytes: rStats.json.storedBytes, disk: await vmdnDisk(rawStore) } : undefined,
      casync: {
        chunkFiles: casChunks.size,
        chunkBytes: casChunkBytes,
        indexBytes: caIndexBytes,
        total: casChunkBytes + caIndexBytes,
        diskBytes: casDisk.diskBytes,
        compression: firstChunk.done ? 'n/a' : await chunkCompression(casStore, firstChunk.value),
      },
    };
  }

  // 3. delivery cases
  log('delivery cases');
  for (const c of casesWithin(images)) {
    const d: DeliveryCase = { target: c.target, held: c.held, referenceCasyncMB: c.referenceCasyncMB };
    try {
      d.vmdn = vmdnDelivery(store, c.target, c.held);
    } catch (e) {
      problem(`vmdn delivery ${c.target}: ${(e as Error).message}`);
    }
    try {
      const t = indexes.get(c.target);
      const h = c.held.map((n) => indexes.get(n));
      if (!t || h.some((x) => !x)) throw new Error('index missing');
      d.casync = casyncDelivery(t, h as CaIndex[], casChunks);
    } catch (e) {
      problem(`casync delivery ${c.target}: ${(e as Error).message}`);
    }
    res.delivery.push(d);
  }

  // 4. exports
  for (const r of results) {
    const qcow2 = path.join(corpus, `${r.name}.qcow2`);
    const outV = path.join(workDir, `${r.name}.vmdn.raw`);
    const outC = path.join(workDir, `${r.name}.casync.raw`);
    const outQ = path.join(workDir, `${r.name}.qemu.raw`);
    log(`${r.name}: vmdn export`);
    const ve = await steps.vmdn<{ bytesWritten: number }>(['export', r.name, outV, '--store', store], { drop: true });
    ve.step.syncSeconds = timeSync();
    let identical: boolean | null = null;
    let compare = 'not run (export failed)';
    if (ve.step.ok) {
      const cmp = run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', outV, qcow2]);
      identical = cmp.code === 0 ? true : cmp.code === 1 ? false : null;
      compare = (cmp.stdout + cmp.stderr).trim().split('\n').slice(-2).join(' ');
      if (identical !== true) problem(`${r.name}: vmdn export differs from the source qcow2 (qemu-img compare exit ${cmp.code}: ${compare})`);
    }
    await rmrf(outV);
    log(`${r.name}: casync extract`);
    const ce = await steps.tool('casync', ['extract', `--store=${casStore}`, caibx(r.name), outC], { drop: true });
    ce.syncSeconds = timeSync();
    await rmrf(outC);
    log(`${r.name}: qemu-img convert`);
    const qe = await steps.tool('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow2, outQ], { drop: true });
    qe.syncSeconds = timeSync();
    await rmrf(outQ);
    log(`${r.name}: export vmdn ${ve.step.seconds} s, casync ${ce.seconds} s, qemu-img ${qe.seconds} s; identical ${identical}`);
    r.export = {
      vmdn: { ...ve.step, bytesWritten: ve.json?.bytesWritten },
      casync: ce,
      qemuImg: qe,
      ratioQemuImg: ve.step.ok && qe.ok ? ve.step.seconds / qe.seconds : NaN,
      ratioCasync: ve.step.ok && ce.ok ? ve.step.seconds / ce.seconds : NaN,
      ratioQemuImgDurable: ve.step.ok && qe.ok ? (ve.step.seconds + (ve.step.syncSeconds ?? 0)) / (qe.seconds + (qe.syncSeconds ?? 0)) : NaN,
      identical,
      compare,
    };
  }
  await rmrf(rawStore);
  await rmrf(casStore);
}

const throughput = (bytesVirtual: number, allocated: number | undefined, seconds: number): Throughput => ({
  virtualMBps: bytesVirtual / 1e6 / seconds,
  allocatedMBps: allocated === undefined ? NaN : allocated / 1e6 / seconds,
});

/**
 * Seconds a `sync` right after a step takes: the data the step left dirty in
 * the page cache. vmdn fsyncs its output before renaming it into place; a tool
 * that does not finishes sooner but leaves this much writing behind.
 */
function timeSync(): number {
  const s0 = performance.now();
  spawnSync('sync');
  return (performance.now() - s0) / 1000;
}

function pick(s: StatsJson) {
  return { images: s.images, objects: s.objects, objectBytes: s.objectBytes, storedBytes: s.storedBytes, logicalBytes: s.logicalBytes };
}
