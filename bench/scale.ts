/**
 * The scale section (issue 17): S3 store vs local store (scale-s3.ts), then
 * fan-out of one image to N sites with and without P2P (fanout.ts).
 * Environment (BENCH_SCALE_*), read by scaleOptsFromEnv:
 *   IMAGE    corpus image (default base: 190 MB of objects, light enough for 16 pulls on 2 cores)
 *   PARTS    stores,fanout (default both)
 *   SITES    site counts (default 1,4,8,16; 1 is the one-site reference, origin only)
 *   LINKS    lo,100mbit (default both)
 *   MODES    origin,p2p (default both; p2p needs `vmdn pull --peer`, else its rows say so)
 *   PULLS    cold pulls per store in the S3 comparison, the fastest counts (default 2)
 *   WORKDIR  scratch (default /var/tmp/vmdn-scalebench), emptied at start
 *   CACHEDIR the fan-out sites' caches (default /dev/shm/vmdn-scale-sites: see fanout.ts)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalStore } from '../src/store/local/local-store.js';
import { sampleLoad } from './measure.js';
import { imageObjects } from './net-load.js';
import { runFanout } from './fanout.js';
import { BenchRgw, storeRun } from './scale-s3.js';
import { renderScale, type ScaleResult } from './scale-report.js';

export interface ScaleOpts {
  corpusDir: string;
  workDir: string;
  cacheDir?: string;
  image: string;
  parts: string[];
  sites: number[];
  links: ('lo' | '100mbit')[];
  modes: ('origin' | 'p2p')[];
  pulls: number;
  log: (s: string) => void;
}

const list = (v: string | undefined, d: string) => (v ?? d).split(',').map((s) => s.trim()).filter(Boolean);

export function scaleOptsFromEnv(corpusDir: string, env: NodeJS.ProcessEnv): ScaleOpts {
  const parts = list(env.BENCH_SCALE_PARTS, 'stores,fanout');
  for (const p of parts) if (p !== 'stores' && p !== 'fanout') throw new Error(`BENCH_SCALE_PARTS: unknown part ${p} (stores, fanout)`);
  const links = list(env.BENCH_SCALE_LINKS, 'lo,100mbit');
  for (const l of links) if (l !== 'lo' && l !== '100mbit') throw new Error(`BENCH_SCALE_LINKS: unknown link ${l} (lo, 100mbit)`);
  const modes = list(env.BENCH_SCALE_MODES, 'origin,p2p');
  for (const m of modes) if (m !== 'origin' && m !== 'p2p') throw new Error(`BENCH_SCALE_MODES: unknown mode ${m} (origin, p2p)`);
  const sites = list(env.BENCH_SCALE_SITES, '1,4,8,16').map(Number);
  for (const n of sites) if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`BENCH_SCALE_SITES: ${n} is not 1..64`);
  return {
    corpusDir, workDir: path.resolve(env.BENCH_SCALE_WORKDIR ?? '/var/tmp/vmdn-scalebench'), image: env.BENCH_SCALE_IMAGE ?? 'base',
    ...(env.BENCH_SCALE_CACHEDIR ? { cacheDir: path.resolve(env.BENCH_SCALE_CACHEDIR) } : {}),
    parts, sites, links: links as ScaleOpts['links'], modes: modes as ScaleOpts['modes'], pulls: Number(env.BENCH_SCALE_PULLS ?? 2),
    log: (s) => process.stderr.write(`[scale ${new Date().toISOString().slice(11, 19)}] ${s}\n`),
  };
}

export async function runScaleBench(o: ScaleOpts): Promise<{ result: ScaleResult; markdown: string }> {
  const t0 = Date.now();
  const startedAt = new Date().toISOString();
  const loadStart = sampleLoad();
  const problems: string[] = [];
  fs.rmSync(o.workDir, { recursive: true, force: true });
  fs.mkdirSync(o.workDir, { recursive: true });
  const localDir = path.join(o.workDir, 'local');
  let stores: ScaleResult['stores'] = null;
  if (o.parts.includes('stores')) {
    const opts = { corpusDir: o.corpusDir, workDir: o.workDir, image: o.image, pulls: o.pulls, log: o.log };
    const local = await storeRun(opts, 'local', localDir);
    let rgw: BenchRgw | undefined;
    try {
      o.log('starting Ceph RGW (scripts/ceph-rgw.sh)');
      rgw = await BenchRgw.start(path.join(o.workDir, 'rgw'));
      stores = { local, s3: await storeRun(opts, 's3', rgw.storeUrl(`vmdn-scale-${Date.now().toString(36)}`), rgw) };
    } catch (e) {
      stores = { local, s3: null, s3Error: e instanceof Error ? e.message.slice(0, 400) : String(e) };
      problems.push(`S3 store: ${stores.s3Error}`);
    } finally {
      rgw?.stop();
    }
    for (const r of [stores.local, stores.s3]) {
      if (r?.import.error) problems.push(`${r.kind} import: ${r.import.error}`);
      for (const p of r?.pulls ?? []) if (p.error) problems.push(`${r!.kind} pull: ${p.error}`);
    }
  }
  let store = await LocalStore.open(localDir);
  if (!store.index.getImage(o.image, 'latest')) {
    await store.close();
    o.log(`importing ${o.image} for the fan-out origin`);
    await storeRun({ corpusDir: o.corpusDir, workDir: o.workDir, image: o.image, pulls: 0, log: o.log }, 'local', localDir);
    store = await LocalStore.open(localDir);
  }
  const imageBytes = (await imageObjects(store, o.image)).storedBytes;
  await store.close();
  const fanout = o.parts.includes('fanout')
    ? await runFanout({ workDir: o.workDir, ...(o.cacheDir ? { cacheDir: o.cacheDir } : {}), originStore: localDir, image: o.image, imageBytes, sites: o.sites, links: o.links, modes: o.modes, log: o.log })
    : [];
  for (const f of fanout) if (f.errors.length) problems.push(`fan-out ${f.link} ${f.n} ${f.mode}: ${f.errors.length} pull(s) failed, first: ${f.errors[0]}`);
  fs.rmSync(o.workDir, { recursive: true, force: true });
  const result: ScaleResult = {
    startedAt, finishedAt: new Date().toISOString(), seconds: (Date.now() - t0) / 1000, cores: os.availableParallelism(),
    load: { start: loadStart, end: sampleLoad() }, image: o.image, imageBytes, stores, fanout, problems,
  };
  return { result, markdown: renderScale(result) };
}
