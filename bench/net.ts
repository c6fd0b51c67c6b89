/**
 * Network delivery benchmark over real loopback HTTP (issue 3). For each
 * corpus delivery case, a client holding some images pulls the target through
 * a cold vmdn edge in front of the origin: bytes on each hop and wall time,
 * beside a plain HTTP download (nginx, curl) of the qcow2 and of a
 * zstd-compressed qcow2. Then: 16 concurrent pulls through one cold edge
 * (origin egress vs unique object bytes), cold pull speed vs curl, edge peak
 * RSS under 64 clients, and the eviction-policy replay that picks the default.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LocalStore } from '../src/store/local/local-store.js';
import { DEFAULT_POLICY } from '../src/net/server/edge.js';
import { timed, run } from './measure.js';
import { startVmdn, VMDN } from './net-procs.js';
import { fanOut, imageObjects, policyReplay, seedCache, shuffled, type PolicyRun } from './net-load.js';
import { startNginx, nginxStaticConf } from '../test/net/nginx.js';

export const NET_CASES = [
  { target: 'academic', held: ['base'] },
  { target: 'academic2', held: ['academic'] },
  { target: 'database', held: ['base', 'academic'] },
  { target: 'turn', held: ['base', 'academic', 'database'] },
];
const IMAGES = ['base', 'academic', 'academic2', 'database', 'turn'];

export interface NetCase {
  target: string;
  held: string[];
  originToEdgeBytes: number;
  edgeToClientBytes: number;
  clientDownloadedBytes: number;
  pullSeconds: number;
  pullMaxRssBytes: number;
  /** The pull's own split: downloading (and verifying) objects vs writing the image. */
  pullPhases?: { download: number; write: number };
  identical: boolean;
  plain: { qcow2Bytes: number; qcow2Seconds: number; compressedBytes: number; compressedSeconds: number };
}

export interface NetBenchResult {
  cases: NetCase[];
  fanout: { image: string; clients: number; uniqueObjectBytes: number; originEgressBytes: number; ratio: number; seconds: number; edgePeakRssBytes: number };
  throughput: { image: string; pullSeconds: number; pullPhases?: { download: number; write: number }; curlCompressedSeconds: number; ratio: number; identical: boolean };
  manyClients: { clients: number; requests: number; bytes: number; seconds: number; edgeMaxSize: number; edgePeakRssBytes: number; evictions: number };
  policies: { runs: PolicyRun[]; best: string; default: string };
  setupSeconds: number;
  seconds: number;
}

const MB = 1e6;
const f1 = (n: number) => (n / MB).toFixed(1);

export async function runNetBench(o: { corpusDir: string; workDir: string; log?: (s: string) => void }): Promise<{ result: NetBenchResult; markdown: string }> {
  const log = o.log ?? ((s: string) => process.stderr.write(`[net] ${s}\n`));
  const t0 = Date.now();
  const w = (p: string) => path.join(o.workDir, p);
  fs.mkdirSync(w('files'), { recursive: true });
  const tmp = w('tmp');
  fs.mkdirSync(tmp, { recursive: true });

  // origin store with every corpus image, kept between runs (imports take minutes)
  const originDir = w('origin');
  let store = await LocalStore.open(originDir);
  for (const name of IMAGES) {
    if (store.index.getImage(name, 'latest')) continue;
    log(`importing ${name}`);
    const r = run(process.execPath, [VMDN, 'import', path.join(o.corpusDir, `${name}.qcow2`), '--name', name, '--store', originDir, '--json']);
    if (r.code !== 0) throw new Error(`import ${name}: ${r.stderr}`);
  }
  // plain files for nginx: the qcow2 (linked) and a zstd-compressed qcow2 (made once)
  for (const name of IMAGES) {
    const q = w(`files/${name}.qcow2`);
    if (!fs.existsSync(q)) fs.symlinkSync(path.join(o.corpusDir, `${name}.qcow2`), q);
    const c = w(`files/${name}.cz.qcow2`);
    if (!fs.existsSync(c)) {
      log(`compressing ${name}.qcow2`);
      run('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd', '-m', '2', '-W', q, `${c}.tmp`]);
      fs.renameSync(`${c}.tmp`, c);
    }
  }
  const objs = new Map(await Promise.all(IMAGES.map(async (n) => [n, await imageObjects(store, n)] as const)));
  const setupSeconds = (Date.now() - t0) / 1000;

  const nginx = await startNginx(w('nginx'), nginxStaticConf(w('nginx'), w('files')));
  const origin = await startVmdn(['serve', '--store', originDir]);
  const curl = async (file: string) => {
    const out = w('tmp/download');
    const r = await timed('curl', ['-sS', '-f', '-o', out, `${nginx.url}/${file}`], { tmpDir: tmp });
    const bytes = fs.statSync(out).size;
    fs.rmSync(out);
    if (r.exitCode !== 0) throw new Error(`curl ${file}: ${r.stderrTail}`);
    return { seconds: r.seconds, bytes };
  };
  const pull = async (url: string, target: string, cacheDir: string) => {
    const out = w('tmp/pulled.raw');
    const r = await timed(process.execPath, [VMDN, 'pull', url, target, out, '--cache', cacheDir, '--json'], { tmpDir: tmp });
    if (r.exitCode !== 0) throw new Error(`pull ${target}: ${r.stdout}${r.stderrTail}`);
    const cmp = run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', path.join(o.corpusDir, `${target}.raw`), out]);
    fs.rmSync(out, { force: true });
    return { seconds: r.seconds, rss: r.maxRssBytes, json: JSON.parse(r.stdout), identical: cmp.code === 0 };
  };
  const freshEdge = async (name: string, maxSize = '64G') => {
    fs.rmSync(w(name), { recursive: true, force: true });
    return startVmdn(['edge', '--upstream', origin.url, '--cache', w(name), '--max-size', maxSize]);
  };

  try {
    const cases: NetCase[] = [];
    for (const c of NET_CASES) {
      log(`delivery: ${c.target} given ${c.held.join('+')}`);
      await seedCache(store, w('client'), c.held);
      const edge = await freshEdge('edge');
      const before = await origin.stats();
      const p = await pull(edge.url, c.target, w('client'));
      const after = await origin.stats();
      const es = await edge.stats();
      await edge.stop();
      const q = await curl(`${c.target}.qcow2`);
      const z = await curl(`${c.target}.cz.qcow2`);
      cases.push({
        target: c.target, held: c.held, originToEdgeBytes: after.objectBytesServed - before.objectBytesServed, edgeToClientBytes: es.bytesServed,
        clientDownloadedBytes: p.json.bytesDownloaded, pullSeconds: p.seconds, pullPhases: p.json.phases, pullMaxRssBytes: p.rss, identical: p.identical,
        plain: { qcow2Bytes: q.bytes, qcow2Seconds: q.seconds, compressedBytes: z.bytes, compressedSeconds: z.seconds },
      });
    }

    log('throughput: cold pull of base from the origin vs curl of base.cz.qcow2');
    fs.rmSync(w('client'), { recursive: true, force: true });
    const cold = await pull(origin.url, 'base', w('client'));
    const cz = await curl('base.cz.qcow2');
    const throughput = { image: 'base', pullSeconds: cold.seconds, pullPhases: cold.json.phases, curlCompressedSeconds: cz.seconds, ratio: cz.seconds / cold.seconds, identical: cold.identical };

    log('16 concurrent pulls of base through one cold edge');
    const base = objs.get('base')!;
    let edge = await freshEdge('edge');
    let before = await origin.stats();
    const fan = await fanOut(edge.url, 16, () => base.digests, { perClient: 8, verify: false });
    let after = await origin.stats();
    const egress = after.objectBytesServed - before.objectBytesServed;
    const fanout = { image: 'base', clients: 16, uniqueObjectBytes: base.storedBytes, originEgressBytes: egress, ratio: egress / base.storedBytes, seconds: fan.seconds, edgePeakRssBytes: edge.peakRss() };
    await edge.stop();

    log('64 clients on one edge with a 256 MiB budget');
    const pool = [...new Set([...objs.get('academic')!.digests, ...objs.get('database')!.digests])];
    edge = await freshEdge('edge', '256M');
    const many = await fanOut(edge.url, 64, (i) => shuffled(pool, i + 1).slice(0, 300), { perClient: 2, verify: false });
    const manyClients = { clients: 64, requests: many.requests, bytes: many.bytes, seconds: many.seconds, edgeMaxSize: 256 * 2 ** 20, edgePeakRssBytes: edge.peakRss(), evictions: (await edge.stats()).evictions };
    await edge.stop();

    const replay = policyReplay(IMAGES.map((n) => objs.get(n)!));
    const result: NetBenchResult = {
      cases, fanout, throughput, manyClients, policies: { ...replay, default: DEFAULT_POLICY }, setupSeconds, seconds: (Date.now() - t0) / 1000,
    };
    return { result, markdown: renderNet(result) };
  } finally {
    await origin.stop();
    await nginx.stop();
    await store.close();
    fs.rmSync(w('client'), { recursive: true, force: true });
    fs.rmSync(w('edge'), { recursive: true, force: true });
  }
}

const phases = (p?: { download: number; write: number }) => (p ? ` (${p.download.toFixed(1)} + ${p.write.toFixed(1)})` : '');

export function renderNet(r: NetBenchResult): string {
  const L: string[] = ['## Network delivery (loopback HTTP)', ''];
  L.push('Each case: a client whose cache holds the given images pulls the target (`vmdn pull`, raw output, checked with `qemu-img compare`) through a cold `vmdn edge` in front of `vmdn serve`. Bytes are object bytes on each hop (from the servers\' /stats). Beside it, curl downloading the image file from nginx on the same machine.', '');
  L.push('| target | given | origin→edge MB | edge→client MB | pull s (download + write) | pull RSS MB | identical | qcow2 MB / curl s | zstd qcow2 MB / curl s |', '|:--|:--|--:|--:|--:|--:|:--|--:|--:|');
  for (const c of r.cases) {
    L.push(`| ${c.target} | ${c.held.join('+')} | ${f1(c.originToEdgeBytes)} | ${f1(c.edgeToClientBytes)} | ${c.pullSeconds.toFixed(1)}${phases(c.pullPhases)} | ${f1(c.pullMaxRssBytes)} | ${c.identical ? 'yes' : '**no**'} | ${f1(c.plain.qcow2Bytes)} / ${c.plain.qcow2Seconds.toFixed(1)} | ${f1(c.plain.compressedBytes)} / ${c.plain.compressedSeconds.toFixed(1)} |`);
  }
  const f = r.fanout, t = r.throughput, m = r.manyClients;
  L.push('', '| target | measured | threshold | met |', '|:--|:--|:--|:--|');
  L.push(`| origin egress, ${f.clients} concurrent pulls of ${f.image} through one cold edge | ${f1(f.originEgressBytes)} MB for ${f1(f.uniqueObjectBytes)} MB of unique objects: ${f.ratio.toFixed(3)}x (${f.seconds.toFixed(1)} s) | <= 1.05x | ${f.ratio <= 1.05 ? '**met**' : '**not met**'} |`);
  L.push(`| cold pull speed: curl of ${t.image}.cz.qcow2 from nginx (${t.curlCompressedSeconds.toFixed(1)} s) / vmdn pull (${t.pullSeconds.toFixed(1)} s${phases(t.pullPhases)}) | ${t.ratio.toFixed(2)} | >= 0.8 | ${t.ratio >= 0.8 ? '**met**' : '**not met**'} |`);
  const rssMax = Math.max(m.edgePeakRssBytes, f.edgePeakRssBytes);
  L.push(`| edge peak RSS, ${m.clients} concurrent clients (${m.requests} requests, ${f1(m.bytes)} MB, ${m.evictions} evictions) and the ${f.clients}-pull fan-out | ${f1(m.edgePeakRssBytes)} MB / ${f1(f.edgePeakRssBytes)} MB | < 300 MB | ${rssMax < 300 * MB ? '**met**' : '**not met**'} |`);
  L.push(`| pulled images bit-identical | ${r.cases.filter((c) => c.identical).length + (t.identical ? 1 : 0)}/${r.cases.length + 1} | all | ${r.cases.every((c) => c.identical) && t.identical ? '**met**' : '**not met**'} |`);
  L.push('', `The 16 concurrent pulls are in-process clients fetching every object of the image (the pull's download phase, without client-side hashing or writing, so that the 2-core machine's time goes to the edge, which verifies every object it takes from the origin); the 64 clients fetch 300 random objects each of academic+database, unverified, through an edge with a 256 MiB budget.`, '');
  L.push('Eviction policy replay (60 pulls, image popularity 1/rank over base, academic, academic2, database, turn; byte hit ratio at a budget of 25% and 50% of all unique object bytes):', '');
  L.push('| policy | budget | byte hit ratio | hit ratio |', '|:--|--:|--:|--:|');
  for (const p of r.policies.runs) L.push(`| ${p.policy} | ${(p.budgetFraction * 100).toFixed(0)}% (${f1(p.budgetBytes)} MB) | ${p.byteHitRatio.toFixed(3)} | ${p.hitRatio.toFixed(3)} |`);
  L.push('', `Best: **${r.policies.best}**; the edge's default is ${r.policies.default}${r.policies.best === r.policies.default ? '' : ' (**differs: update DEFAULT_POLICY in src/net/server/edge.ts**)'}. Setup (imports, compressed qcow2s, reused between runs) ${r.setupSeconds.toFixed(0)} s; whole section ${r.seconds.toFixed(0)} s.`, '');
  return L.join('\n');
}
