/**
 * The scale section's result shape, its targets (issue 17) and its Markdown.
 * Pure: computed from the numbers alone.
 */
import type { LoadSample } from './measure.js';
import type { Target } from './types.js';
import { MB, fin, f1, f2, mb, ratio } from './numbers.js';

/** radosgw's perf counters (admin socket `perf dump`, section rgw) over one step. */
export interface RgwCounters {
  requests: number;
  gets: number;
  getBytes: number;
  puts: number;
  putBytes: number;
}

export interface StoreStep {
  seconds: number;
  /** the vmdn client (import or pull), user + system */
  cpuSeconds: number;
  /** Ceph's daemons (radosgw, OSD, monitor) meanwhile; 0 for the local store */
  storeCpuSeconds: number;
  rgw?: RgwCounters;
  error?: string;
}

export interface BucketKind {
  kind: string;
  objects: number;
  bytes: number;
}

export interface StoreRun {
  kind: 'local' | 's3';
  /** S3: the bucket's objects after the import */
  bucket?: BucketKind[];
  import: StoreStep & { dataBytes: number; objects: number; storedBytes: number };
  pulls: (StoreStep & { serverCpuSeconds: number; bytes: number; objects: number; originObjectBytes: number })[];
}

export interface FanoutRun {
  link: 'lo' | '100mbit';
  n: number;
  mode: 'origin' | 'p2p';
  imageBytes: number;
  qdisc?: string;
  /** from the common start until the last site's pull ended; null when not run */
  seconds: number | null;
  siteSeconds: number[];
  /** object bytes the origin sent (its /stats) */
  originObjectBytes: number | null;
  /** bytes the origin's namespace sent, headers included (rate-limited runs) */
  originWireBytes?: number;
  /** bytes the pulls got from peers (their --json p2p figures) */
  peerBytes?: number;
  /** peer requests that failed (the objects came from the origin) */
  peerFailures?: number;
  /** (pull, peer) pairs where the pull stopped using the peer (it failed or lacked the image), of n x n */
  peersDropped?: number;
  /** objects asked of a peer that came from the origin instead */
  fellBack?: number;
  /** the busiest site link direction, bytes, and its share of rate x seconds */
  maxSiteBytes?: number;
  linkUse?: number;
  cpu: { clients: number; origin: number; edges: number };
  loadavg: number[];
  maxRssBytes?: number;
  bound?: string;
  errors: string[];
  note?: string;
}

export interface ScaleResult {
  startedAt: string;
  finishedAt: string;
  seconds: number;
  cores: number;
  load: { start: LoadSample; end: LoadSample };
  image: string;
  /** stored bytes of the image's objects: "one image" */
  imageBytes: number;
  stores: { local: StoreRun; s3: StoreRun | null; s3Error?: string } | null;
  fanout: FanoutRun[];
  problems: string[];
}


/** The fastest good pull of a store run. */
export function bestPull(r: StoreRun | null | undefined): StoreRun['pulls'][number] | undefined {
  return r?.pulls.filter((p) => !p.error && fin(p.seconds)).sort((a, b) => a.seconds - b.seconds)[0];
}

const importMBps = (r: StoreRun | null | undefined) => (r && !r.import.error ? r.import.dataBytes / MB / r.import.seconds : null);
const pullMBps = (r: StoreRun | null | undefined) => {
  const p = bestPull(r);
  return p ? p.bytes / MB / p.seconds : null;
};

export function scaleTargets(r: ScaleResult): Target[] {
  const t: Target[] = [];
  const s = r.stores;
  if (s) {
    const ri = ratio(importMBps(s.s3), importMBps(s.local));
    t.push({ target: `import of ${r.image}: S3 store / local store (MB/s of data)`, measured: `${f1(importMBps(s.s3))} / ${f1(importMBps(s.local))} MB/s = ${f2(ri)}x`, threshold: '>= 0.5x', met: ri === null ? null : ri >= 0.5 });
    const rp = ratio(pullMBps(s.s3), pullMBps(s.local));
    t.push({ target: `cold pull of ${r.image} on loopback: vmdn serve --store s3:// / --store DIR (MB/s)`, measured: `${f1(pullMBps(s.s3))} / ${f1(pullMBps(s.local))} MB/s = ${f2(rp)}x`, threshold: '>= 0.5x', met: rp === null ? null : rp >= 0.5 });
  }
  for (const f of r.fanout.filter((x) => x.mode === 'p2p')) {
    const x = f.errors.length ? null : ratio(f.originObjectBytes, f.imageBytes);
    t.push({ target: `P2P, ${f.n} sites on ${f.link}: origin egress / one image`, measured: f.note ?? `${mb(f.originObjectBytes)} / ${mb(f.imageBytes)} MB = ${f2(x)}x`, threshold: '<= 1.5x', met: x === null ? null : x <= 1.5 });
  }
  const one = r.fanout.find((x) => x.link === '100mbit' && x.n === 1 && x.mode === 'origin');
  for (const mode of ['p2p', 'origin'] as const) {
    const sixteen = r.fanout.find((x) => x.link === '100mbit' && x.n === 16 && x.mode === mode);
    if (!sixteen) continue;
    const x = sixteen.errors.length ? null : ratio(sixteen.seconds, one?.seconds);
    const what = mode === 'p2p' ? 'P2P' : 'origin only (no P2P, for comparison: not the target\'s setup)';
    t.push({ target: `${what}: time for 16 sites at 100 Mbit/s each / one site`, measured: sixteen.note ?? `${f1(sixteen.seconds)} / ${f1(one?.seconds)} s = ${f2(x)}x`, threshold: '<= 2x', met: mode === 'origin' || x === null ? null : x <= 2 });
  }
  return t;
}

/**
 * What no code could beat in the 16-site P2P run on this machine: all its
 * processes share the machine's cores, so it takes at least their CPU seconds
 * / cores; and no site is done before its busiest link carried its bytes.
 */
export function scaleLimits(r: ScaleResult): Target[] {
  const one = r.fanout.find((x) => x.link === '100mbit' && x.n === 1 && x.mode === 'origin');
  const sixteen = r.fanout.find((x) => x.link === '100mbit' && x.n === 16 && x.mode === 'p2p');
  if (!one || !sixteen || sixteen.errors.length || !fin(one.seconds) || !fin(sixteen.seconds)) return [];
  const cpu = sixteen.cpu.clients + sixteen.cpu.origin + sixteen.cpu.edges;
  const cpuFloor = cpu / r.cores;
  const linkFloor = fin(sixteen.maxSiteBytes) ? (sixteen.maxSiteBytes * 8) / 100e6 : null;
  const floor = Math.max(cpuFloor, linkFloor ?? 0);
  return [{
    target: 'limit of the time for 16 sites with P2P / one site: the run\'s CPU seconds / cores (and the busiest link\'s bytes at 100 Mbit/s), / one site',
    measured: `max(${f1(cpu)} CPU s / ${r.cores} cores = ${f1(cpuFloor)} s, ${f1(linkFloor)} s) / ${f1(one.seconds)} s = ${f2(floor / one.seconds)}x; measured ${f2(sixteen.seconds / one.seconds)}x`,
    threshold: 'physical limit on this machine',
    met: null,
  }];
}

const metText = (m: boolean | null) => (m === null ? 'not measured' : m ? '**met**' : '**not met**');
const row = (cells: (string | number)[]) => `| ${cells.map((c) => String(c).replace(/(?<!\\)\|/g, '\\|')).join(' | ')} |`;

/** One line on what the S3 store does more than the local one, from the counters. */
export function s3CostLine(s: NonNullable<ScaleResult['stores']>): string {
  const imp = s.s3?.import;
  const p = bestPull(s.s3);
  const lp = bestPull(s.local);
  if (!imp || imp.error || !imp.rgw) return 'S3 store: no figures (its import failed or did not run).';
  const kinds = (s.s3!.bucket ?? []).map((b) => `${b.objects} ${b.kind} (${b.objects ? f1(b.bytes / b.objects / 2 ** 20) : 'n/a'} MiB each)`).join(', ');
  const L = [
    `Import: ${imp.objects} objects went into ${imp.rgw.puts} PUTs${kinds ? ` — the bucket then held ${kinds}` : ''} — ${f2(imp.rgw.puts / imp.seconds)} PUT/s, ${f1(imp.rgw.putBytes / MB / imp.seconds)} MB/s uploaded; the import's own CPU ${f1(imp.cpuSeconds)} s vs ${f1(s.local.import.cpuSeconds)} s local, Ceph's daemons ${f1(imp.storeCpuSeconds)} s more.`,
  ];
  if (p?.rgw) {
    L.push(`Pull: the origin answered ${p.objects} objects with ${p.rgw.gets} GETs to RGW (ranged reads of packs, ${f1(p.rgw.gets ? p.rgw.getBytes / p.rgw.gets / 1024 : NaN)} KiB each on average, ${f1(p.rgw.gets ? p.objects / p.rgw.gets : NaN)} objects per GET), ${mb(p.rgw.getBytes)} MB read from RGW for ${mb(p.originObjectBytes)} MB served; origin CPU ${f1(p.serverCpuSeconds)} s vs ${f1(lp?.serverCpuSeconds)} s local, Ceph's daemons ${f1(p.storeCpuSeconds)} s more.`);
  }
  return L.join(' ');
}

export function renderScale(r: ScaleResult): string {
  const L: string[] = ['## Scale: S3 store and fan-out (issue 17)', ''];
  L.push(`Run ${r.startedAt} → ${r.finishedAt} (${f1(r.seconds / 60)} min) on ${r.cores} cores. Load average (1/5/15 min) at start ${r.load.start.loadavg.join(' / ')}, at end ${r.load.end.loadavg.join(' / ')}. Image ${r.image}: ${mb(r.imageBytes)} MB of stored objects ("one image" below).`, '');
  L.push('| target | measured | threshold | verdict |', '|:--|:--|:--|:--|');
  for (const t of scaleTargets(r)) L.push(row([t.target, t.measured, t.threshold, metText(t.met)]));
  for (const t of scaleLimits(r)) L.push(row([t.target, t.measured, t.threshold, 'limit (no verdict)']));
  const s = r.stores;
  if (s) {
    L.push('', '### S3 store vs local store', '');
    L.push(`The same image imported (from its qcow2) into a local store and into an S3 store on a real Ceph RGW on this machine (scripts/ceph-rgw.sh: one monitor, one memstore OSD, radosgw), then pulled cold on loopback through \`vmdn serve --store DIR\` and \`vmdn serve --store s3://…\` (fastest of ${s.local.pulls.length} pulls each). S3 requests from radosgw's perf counters. MB/s: import, of the image's non-zero data; pull, of the objects downloaded (stored, compressed bytes). CPU: the vmdn command; + origin: \`vmdn serve\`; Ceph: radosgw + OSD + monitor.`, '');
    L.push('| store | step | s | MB/s | objects/s | CPU s (vmdn) | CPU s (origin) | CPU s (Ceph) | S3 requests (GET / PUT) |', '|:--|:--|--:|--:|--:|--:|--:|--:|:--|');
    const stores = [s.local, s.s3].filter((x): x is StoreRun => !!x);
    for (const x of stores) {
      const i = x.import;
      L.push(row([x.kind, 'import', i.error ? `failed: ${i.error.slice(0, 80)}` : f1(i.seconds), f1(i.dataBytes / MB / i.seconds), f1(i.objects / i.seconds), f1(i.cpuSeconds), '-', x.kind === 's3' ? f1(i.storeCpuSeconds) : '-', i.rgw ? `${i.rgw.gets} / ${i.rgw.puts}` : '-']));
      const p = bestPull(x);
      const failed = x.pulls.find((q) => q.error);
      if (p) L.push(row([x.kind, 'cold pull', f1(p.seconds), f1(p.bytes / MB / p.seconds), f1(p.objects / p.seconds), f1(p.cpuSeconds), f1(p.serverCpuSeconds), x.kind === 's3' ? f1(p.storeCpuSeconds) : '-', p.rgw ? `${p.rgw.gets} / ${p.rgw.puts}` : '-']));
      else if (failed) L.push(row([x.kind, 'cold pull', `failed: ${failed.error!.slice(0, 80)}`, '', '', '', '', '', '']));
    }
    if (s.s3Error) L.push('', `S3 store not measured: ${s.s3Error}`);
    else L.push('', s3CostLine(s));
  }
  if (r.fanout.length) {
    L.push('', '### Fan-out: one image to N sites', '');
    L.push(`Every site's \`vmdn pull\` (into its own empty cache, the image written to a raw file) starts at once; time until the last one ended. The sites' caches are on tmpfs (the disk is shared with other jobs, and 16 caches of ~15,000 files each took minutes to write back and delete between runs); the raw files on disk, each deleted as its pull ends. Origin only: every site pulls from the origin. P2P: every site also runs \`vmdn edge --upstream ORIGIN\`, and each pull gets \`--peer\` for every site's edge (rendezvous hashing over the peers in the client). lo: all on loopback. 100mbit: one network namespace per site, veth to the host with tc tbf at 100 Mbit/s both ways (${r.fanout.find((f) => f.qdisc)?.qdisc ?? 'n/a'}), the origin in its own namespace without limit, routed through the host. Origin MB: object bytes from its /stats (× one image); wire: its namespace's tx bytes. Busiest link: the most bytes one site link carried in one direction. CPU: user + system seconds of the pulls + origin + edges. Bound: a link when the busiest one ran above 70 % of its rate on average, CPU when the processes used above 80 % of the ${r.cores} cores.`, '');
    L.push('| link | sites | mode | time to all s | site pulls s (min–max) | origin MB (× image) | origin wire MB | from peers MB | busiest link MB | CPU s pulls + origin + edges | load (1 min) at end | bound by |', '|:--|--:|:--|--:|:--|--:|--:|--:|--:|:--|--:|:--|');
    for (const f of r.fanout) {
      if (f.note) {
        L.push(row([f.link, f.n, f.mode === 'p2p' ? 'P2P' : 'origin only', f.note, '', '', '', '', '', '', '', '']));
        continue;
      }
      const ss = f.siteSeconds.filter(fin);
      L.push(row([
        f.link, f.n, f.mode === 'p2p' ? 'P2P' : 'origin only', f.errors.length ? `${f1(f.seconds)} (${f.errors.length} failed)` : f1(f.seconds), ss.length ? `${f1(Math.min(...ss))}–${f1(Math.max(...ss))}` : 'n/a',
        `${mb(f.originObjectBytes)} (${f2(ratio(f.originObjectBytes, f.imageBytes))}×)`, mb(f.originWireBytes), f.mode === 'p2p' ? `${mb(f.peerBytes)}${f.peerFailures ? ` (${f.peerFailures} failed requests${f.peersDropped !== undefined ? `, ${f.peersDropped} of ${f.n * f.n} pull-peer pairs dropped, ${f.fellBack} objects fell back to the origin` : ''})` : ''}` : '-', mb(f.maxSiteBytes),
        `${f1(f.cpu.clients)} + ${f1(f.cpu.origin)} + ${f1(f.cpu.edges)}`, f.loadavg[0] ?? 'n/a', f.bound ?? 'n/a',
      ]));
    }
    const errs = r.fanout.flatMap((f) => f.errors.slice(0, 3).map((e) => `${f.link} ${f.n} ${f.mode}: ${e}`));
    if (errs.length) L.push('', 'Failed pulls (first three per run):', '', ...errs.map((e) => `- ${e}`));
  }
  if (r.problems.length) L.push('', '### Problems', '', ...r.problems.map((p) => `- ${p.replace(/\n/g, ' ')}`));
  L.push('');
  return L.join('\n');
}
