/**
 * Fan-out (issue 17): one image to N sites at once, each site a process
 * group (`vmdn pull` into its own cache; with P2P also the site's `vmdn edge`
 * over the origin, and the pull gets `--peer` for every site's edge). On
 * loopback, and through a rate-limited link per site (fanout-net.ts: one
 * namespace per site, tc tbf both ways); the origin unrestricted.
 * Measured: origin object bytes (its /stats) and wire bytes, time until every
 * site's pull ended (all started together), CPU seconds of clients, origin
 * and edges, the load average, and per-site link bytes (what bound the run).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cpuSecondsOf, killTracked, timed } from './measure.js';
import { startVmdn, VMDN, type Server } from './net-procs.js';
import { FanoutNet } from './fanout-net.js';
import { inNs } from './netns.js';
import type { FanoutRun } from './scale-report.js';

export interface FanoutOpts {
  workDir: string;
  /**
   * Where the sites' caches go (default /dev/shm/vmdn-scale-sites): 16 caches of ~15,000
   * object files each took minutes to write back and delete on this shared disk, between runs.
   */
  cacheDir?: string;
  /** a local store holding `image` */
  originStore: string;
  image: string;
  /** stored bytes of the image's objects: "one image" */
  imageBytes: number;
  sites: number[];
  links: ('lo' | '100mbit')[];
  modes: ('origin' | 'p2p')[];
  bps?: number;
  log: (s: string) => void;
}

/** Whether the pull command of this build takes --peer (branch p2p). */
export function hasPeerFlag(): boolean {
  const r = spawnSync(process.execPath, [VMDN, 'pull', '--help'], { encoding: 'utf8' });
  return /--peer\b/.test(r.stdout);
}

/**
 * The origin's object bytes so far. Retried: node's fetch reuses a keep-alive
 * connection the server may just have closed (its 5 s idle timeout), which
 * fails as "fetch failed" though the origin is fine.
 */
export async function objectBytes(s: Server): Promise<number> {
  for (let k = 0; ; k++) {
    try {
      return (await s.stats()).objectBytesServed!;
    } catch (e) {
      if (k >= 3) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

const tail = (s: string) => s.trim().split('\n').slice(-2).join(' | ').slice(0, 300);

/** What bound a run: the busiest site link (> 70 % of its rate), the cores (> 80 % busy with this run, or a load above the core count), or neither. */
export function boundBy(r: Pick<FanoutRun, 'seconds' | 'cpu' | 'linkUse' | 'loadavg'>, cores: number): string {
  if (r.seconds === null) return 'n/a';
  const cpu = (r.cpu.clients + r.cpu.origin + r.cpu.edges) / (cores * r.seconds);
  const parts: string[] = [];
  if (r.linkUse !== undefined && r.linkUse > 0.7) parts.push(`link (${Math.round(r.linkUse * 100)} % of the busiest site's rate)`);
  if (cpu > 0.8) parts.push(`CPU (${Math.round(cpu * 100)} % of ${cores} cores)`);
  // the machine is shared: a 1-minute load above the core count means our processes waited for CPU
  const load = r.loadavg[0] ?? 0;
  if (!parts.length && load > cores) parts.push(`CPU, contended (this run's processes ${Math.round(cpu * 100)} % of ${cores} cores, load ${load.toFixed(1)})`);
  if (!parts.length) parts.push(`neither (CPU ${Math.round(cpu * 100)} %${r.linkUse !== undefined ? `, link ${Math.round(r.linkUse * 100)} %` : ''}: latency, start-up)`);
  return parts.join(' and ');
}

export async function runFanout(o: FanoutOpts): Promise<FanoutRun[]> {
  const bps = o.bps ?? 1e8;
  const cores = os.availableParallelism();
  const peer = hasPeerFlag();
  const runs: FanoutRun[] = [];
  const tmp = path.join(o.workDir, 'tmp');
  fs.mkdirSync(tmp, { recursive: true });
  const maxN = Math.max(...o.sites);
  for (const link of o.links) {
    const limited = link !== 'lo';
    const net = limited ? new FanoutNet(maxN, bps, killTracked) : undefined;
    let origin: Server | undefined;
    try {
      net?.setup();
      origin = await startVmdn(['serve', '--store', o.originStore, '--no-portal'], limited ? { host: net!.origin.c.nsIp, wrap: inNs(net!.origin.c) } : {});
      for (const mode of o.modes) {
        for (const n of o.sites) {
          if (mode === 'p2p' && n === 1) continue;
          const base = { link, n, mode, imageBytes: o.imageBytes, ...(limited ? { qdisc: net!.qdisc() } : {}) };
          if (mode === 'p2p' && !peer) {
            runs.push({ ...base, seconds: null, siteSeconds: [], originObjectBytes: null, cpu: { clients: 0, origin: 0, edges: 0 }, loadavg: os.loadavg(), errors: [], note: 'not run (needs --peer)' });
            continue;
          }
          o.log(`fan-out: ${n} site(s), ${link}, ${mode === 'p2p' ? 'P2P' : 'origin only'}`);
          try {
            runs.push(await oneRun({ ...base, net, origin, cores, tmp, o }));
          } catch (e) {
            // one failed run (an edge that would not start) is a row in the report, not the end of the section
            const msg = e instanceof Error ? `${e.message}${e.cause ? ` (${String(e.cause)})` : ''}` : String(e);
            o.log(`  failed: ${msg}`);
            runs.push({ ...base, seconds: null, siteSeconds: [], originObjectBytes: null, cpu: { clients: 0, origin: 0, edges: 0 }, loadavg: os.loadavg(), errors: [msg.slice(0, 300)] });
          }
        }
      }
    } finally {
      await origin?.stop();
      net?.teardown();
      fs.rmSync(path.join(o.workDir, 'sites'), { recursive: true, force: true });
      fs.rmSync(cacheRoot(o), { recursive: true, force: true });
    }
  }
  return runs;
}

interface RunCtx {
  link: 'lo' | '100mbit';
  n: number;
  mode: 'origin' | 'p2p';
  imageBytes: number;
  qdisc?: string;
  net: FanoutNet | undefined;
  origin: Server;
  cores: number;
  tmp: string;
  o: FanoutOpts;
}

const cacheRoot = (o: FanoutOpts) => o.cacheDir ?? '/dev/shm/vmdn-scale-sites';

async function oneRun(c: RunCtx): Promise<FanoutRun> {
  const { net, origin, n } = c;
  const siteDir = (i: number) => path.join(c.o.workDir, 'sites', `s${i}`);
  const cacheDir = (i: number) => path.join(cacheRoot(c.o), `s${i}`);
  const clean = () => {
    fs.rmSync(path.join(c.o.workDir, 'sites'), { recursive: true, force: true });
    fs.rmSync(cacheRoot(c.o), { recursive: true, force: true });
  };
  clean();
  for (let i = 0; i < n; i++) fs.mkdirSync(siteDir(i), { recursive: true });
  const port = new URL(origin.url).port;
  const originUrl = (i: number) => (net ? `http://${net.origin.c.nsIp}:${port}` : origin.url);
  const wrap = (i: number) => (net ? inNs(net.sites[i]!.c) : []);
  const errors: string[] = [];
  const edges: Server[] = [];
  try {
    if (c.mode === 'p2p') {
      for (let i = 0; i < n; i++) {
        edges.push(await startVmdn(['edge', '--upstream', originUrl(i), '--cache', path.join(cacheDir(i), 'edge'), '--max-size', '10G'], net ? { host: net.sites[i]!.c.nsIp, wrap: wrap(i) } : {}));
      }
    }
    const peers = edges.flatMap((e) => ['--peer', e.url]);
    const edgeCpu0 = edges.map((e) => cpuSecondsOf(e.pid));
    const before = await objectBytes(origin);
    const cpu0 = cpuSecondsOf(origin.pid);
    const wire0 = net?.originTxBytes();
    const rx0 = net ? Array.from({ length: n }, (_, i) => [net.siteRxBytes(i), net.siteTxBytes(i)] as const) : [];
    const t0 = Date.now();
    const pulls = await Promise.all(Array.from({ length: n }, (_, i) => {
      const out = path.join(siteDir(i), 'out.raw');
      const argv = [...wrap(i), process.execPath, VMDN, 'pull', originUrl(i), c.o.image, out, '--cache', path.join(cacheDir(i), 'cache'), '--json', '--no-progress', ...peers];
      // deleted as soon as the pull ended: its pages need never reach the shared disk
      return timed(argv[0]!, argv.slice(1), { tmpDir: c.tmp, timeoutMs: 20 * 60_000 }).finally(() => fs.rmSync(out, { force: true }));
    }));
    const seconds = (Date.now() - t0) / 1000;
    const loadavg = os.loadavg().map((x) => Math.round(x * 100) / 100);
    const originObjectBytes = await objectBytes(origin) - before;
    const originCpu = cpuSecondsOf(origin.pid) - cpu0;
    const edgesCpu = edges.reduce((a, e, i) => a + (cpuSecondsOf(e.pid) - edgeCpu0[i]!), 0);
    let peerBytes = 0;
    let peerFailures = 0;
    let peersDropped = 0;
    let fellBack = 0;
    pulls.forEach((p, i) => {
      if (p.exitCode !== 0) errors.push(`site ${i}: exit ${p.exitCode}: ${tail(p.stderrTail)}`);
      try {
        const j = JSON.parse(p.stdout) as { p2p?: { bytes: number; failures: number; peers: { used: boolean; fellBack: number }[] } };
        peerBytes += j.p2p?.bytes ?? 0;
        peerFailures += j.p2p?.failures ?? 0;
        for (const q of j.p2p?.peers ?? []) {
          if (!q.used) peersDropped++;
          fellBack += q.fellBack;
        }
      } catch {
        /* failed pull: reported above */
      }
    });
    let linkUse: number | undefined;
    let maxSiteBytes: number | undefined;
    if (net) {
      maxSiteBytes = Math.max(...rx0.map(([rx, tx], i) => Math.max(net.siteRxBytes(i) - rx, net.siteTxBytes(i) - tx)));
      linkUse = maxSiteBytes / ((c.o.bps ?? 1e8) / 8 * seconds);
    }
    const cpu = { clients: pulls.reduce((a, p) => a + p.cpuSeconds, 0), origin: originCpu, edges: edgesCpu };
    const run: FanoutRun = {
      link: c.link, n, mode: c.mode, imageBytes: c.imageBytes, ...(c.qdisc ? { qdisc: c.qdisc } : {}),
      seconds, siteSeconds: pulls.map((p) => p.seconds), originObjectBytes, ...(net ? { originWireBytes: net.originTxBytes() - wire0!, maxSiteBytes, linkUse } : {}),
      ...(c.mode === 'p2p' ? { peerBytes, peerFailures, peersDropped, fellBack } : {}),
      cpu, loadavg, maxRssBytes: Math.max(...pulls.map((p) => p.maxRssBytes)), errors,
    };
    run.bound = boundBy(run, c.cores);
    c.o.log(`  ${seconds.toFixed(1)} s, origin ${(originObjectBytes / 1e6).toFixed(1)} MB, CPU ${(cpu.clients + cpu.origin + cpu.edges).toFixed(1)} s, load ${loadavg.join(' ')}, bound: ${run.bound}${errors.length ? `, ${errors.length} failed` : ''}`);
    return run;
  } finally {
    for (const e of edges) await e.stop();
    clean();
  }
}
