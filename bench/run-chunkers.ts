/**
 * The chunker comparison of `npm run bench` (run.ts): the corpus imported
 * with each chunker spec into a store of its own, the cheapest first, so that
 * the time budget cuts the costly ones. The default spec's row comes from the
 * compare part's main store when that part ran.
 */
import path from 'node:path';
import { parseChunkerSpec } from '../src/strategy/chunker.js';
import { casesWithin } from './run-settings.js';
import { rmrf, type BenchRun, type ImportJson, type StatsJson } from './run-steps.js';
import type { BenchResults, ChunkerRun } from './types.js';
import { vmdnDelivery, vmdnDisk } from './vmdn-store.js';

/** Runs every chunker spec of the settings into res.chunkers, the default first. */
export async function runChunkers(bench: BenchRun, res: BenchResults): Promise<void> {
  const { chunkerSpecs, defaultSpec, images } = bench.settings;
  const results = res.images;
  // without the compare part, guess ~40 s per image until the default's own run says better
  const mainImportSeconds = results.length ? results.reduce((n, r) => n + r.vmdnImportQcow2.seconds, 0) : 40 * images.length;
  // cheapest first, so that the budget cuts the costly ones (fixed:4k) rather than the rest
  const order = [...chunkerSpecs].sort((a, b) => estimateSeconds(a, mainImportSeconds) - estimateSeconds(b, mainImportSeconds));
  for (const spec of order) {
    if (spec === defaultSpec && results.length) {
      res.chunkers.push({
        spec,
        isDefault: true,
        status: results.every((r) => r.vmdnImportQcow2.ok) ? 'ok' : 'failed',
        importSeconds: mainImportSeconds,
        perImageSeconds: Object.fromEntries(results.map((r) => [r.name, r.vmdnImportQcow2.seconds])),
        maxRssBytes: Math.max(...results.map((r) => r.vmdnImportQcow2.maxRssBytes)),
        objects: res.stores?.vmdn.objects,
        storedBytes: res.stores?.vmdn.storedBytes,
        diskTotal: res.stores?.vmdn.disk.total,
        delivery: res.delivery.filter((d) => d.vmdn).map((d) => ({ target: d.target, total: d.vmdn!.total })),
        deliveryTotal: res.delivery.reduce((n, d) => n + (d.vmdn?.total ?? 0), 0),
      });
      continue;
    }
    res.chunkers.push({ ...(await chunkerRun(bench, spec, mainImportSeconds)), isDefault: spec === defaultSpec });
  }
  // default first, then in the order asked
  res.chunkers.sort((a, b) => Number(b.isDefault) - Number(a.isDefault) || chunkerSpecs.indexOf(a.spec) - chunkerSpecs.indexOf(b.spec));
}

/** Rough cost of importing the corpus with a spec, from the default's import time; smaller chunks cost more per byte. */
function estimateSeconds(spec: string, mainImportSeconds: number): number {
  const p = parseChunkerSpec(spec);
  const factor = Math.sqrt(Math.max(1, (64 << 10) / p.avg));
  // object count drives cleanup too (fixed:4k makes ~1M files)
  return mainImportSeconds * factor * (p.avg <= 8 << 10 ? 2 : 1) + 20;
}

async function chunkerRun(bench: BenchRun, spec: string, mainImportSeconds: number): Promise<ChunkerRun> {
  const { deadline } = bench;
  const { workDir, budgetMinutes } = bench.settings;
  const { log } = bench.steps;
  const est = estimateSeconds(spec, mainImportSeconds);
  const left = (deadline - Date.now()) / 1000;
  if (est > left) {
    log(`chunker ${spec}: skipped (estimated ${Math.round(est)} s, ${Math.round(left)} s left in the budget)`);
    return { spec, isDefault: false, status: 'skipped', reason: `time budget: estimated ${Math.round(est)} s, ${Math.max(0, Math.round(left))} s left of ${budgetMinutes} min` };
  }
  const s0 = Date.now();
  const store = path.join(workDir, `chunker-${spec.replace(/[^a-z0-9]+/gi, '-')}`);
  const out = await chunkerImports(bench, spec, store);
  await rmrf(store);
  out.wallSeconds = (Date.now() - s0) / 1000;
  return out;
}

async function chunkerImports(bench: BenchRun, spec: string, store: string): Promise<ChunkerRun> {
  const { steps, corpus, deadline } = bench;
  const { images } = bench.settings;
  const { log, problem } = steps;
  const run: ChunkerRun = { spec, isDefault: false, status: 'ok' };
  const perImageSeconds: Record<string, number> = {};
  let maxRss = 0;
  try {
    for (const name of images) {
      const timeoutMs = Math.max(60_000, deadline - Date.now());
      log(`chunker ${spec}: import ${name}`);
      const r = await steps.vmdn<ImportJson>(['import', path.join(corpus, `${name}.qcow2`), '--name', name, '--store', store, '--chunker', spec], { drop: true, timeoutMs });
      perImageSeconds[name] = r.step.seconds;
      maxRss = Math.max(maxRss, r.step.maxRssBytes);
      if (!r.step.ok) return { ...run, status: r.step.error?.startsWith('timed out') ? 'timed out' : 'failed', reason: r.step.error, perImageSeconds };
    }
    const st = await steps.vmdn<StatsJson>(['stats', '--store', store], { retry: true });
    const disk = await vmdnDisk(store);
    const delivery: { target: string; total: number }[] = [];
    for (const c of casesWithin(images)) {
      delivery.push({ target: c.target, total: vmdnDelivery(store, c.target, c.held).total });
    }
    log(`chunker ${spec}: ${st.json?.objects} objects, ${((st.json?.storedBytes ?? NaN) / 1e6).toFixed(1)} MB stored, delivery sum ${(delivery.reduce((n, d) => n + d.total, 0) / 1e6).toFixed(1)} MB`);
    return {
      ...run,
      importSeconds: Object.values(perImageSeconds).reduce((a, b) => a + b, 0),
      perImageSeconds,
      maxRssBytes: maxRss,
      objects: st.json?.objects,
      storedBytes: st.json?.storedBytes,
      diskTotal: disk.total,
      delivery,
      deliveryTotal: delivery.reduce((n, d) => n + d.total, 0),
    };
  } catch (e) {
    problem(`chunker ${spec}: ${(e as Error).message}`);
    return { ...run, status: 'failed', reason: (e as Error).message, perImageSeconds };
  }
}
