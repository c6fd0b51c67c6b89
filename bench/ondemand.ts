/**
 * On-demand delivery benchmark (issue 13). Over loopback and a rate-limited
 * link (netns.ts: veth + tc tbf at 1 Gbit/s and 100 Mbit/s), with `vmdn serve`
 * and nginx on the server side:
 *   - full cold pull of the image to a raw file: vmdn pull vs curl|zstd vs casync extract;
 *   - NBD throughput of the fully cached image vs qemu-nbd of the raw file, and a
 *     cold lazy read (vmdn nbd --from while it fills), with vmdn nbd's peak RSS;
 *   - boots to `login:`: local raw file (baseline), and with `vmdn boot` (when
 *     built): cold site without profile (bytes before login), recording a
 *     profile, then a fresh site with the profile at 100 Mbit/s (ondemand-boot-part.ts).
 * Setup (origin store, base.raw.zst, casync store, kernel) is kept in workDir between runs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { LocalStore } from '../src/store/local/local-store.js';
import { cpuSecondsOf, dropCaches, killTracked, run, sampleLoad, timed } from './measure.js';
import { startVmdn, VMDN, type Server } from './net-procs.js';
import { imageObjects } from './net-load.js';
import { startNginx, nginxStaticConf, type Nginx } from '../test/net/nginx.js';
import { DEFAULT_LINK, inNs, Link, RATES } from './netns.js';
import { extractKernel, hasQemuSystem } from './ondemand-boot.js';
import { boots } from './ondemand-boot-part.js';
import { nbdRead, qemuNbdRead } from './ondemand-nbd.js';
import { medianRound, renderOnDemand, type LinkPulls, type NbdRead, type OnDemandResult, type PullRun } from './ondemand-report.js';

export interface OnDemandOpts {
  corpusDir: string;
  workDir: string;
  /** links to run, from RATES (default all: lo, 1gbit, 100mbit) */
  links?: string[];
  /** quick: loopback and 1 Gbit/s only, boots only when asked */
  quick?: boolean;
  boots?: boolean;
  /** parts to run: pulls, nbd, boots (default all; `boots` also follows `boots`) */
  parts?: string[];
  dropCaches?: boolean;
  /** rounds of the timed pulls and NBD reads (median shown; default 3) */
  rounds?: number;
  log?: (s: string) => void;
}

const IMAGE = 'base';

interface Side {
  origin: Server;
  nginx: Nginx;
  accessLog: string;
}

/** Sum of nginx body bytes logged since `from` (a byte offset into the log). */
function nginxBytes(log: string, from: number): number {
  const text = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(from) : '';
  return text.split('\n').reduce((a, l) => a + (Number(l.split(' ')[0]) || 0), 0);
}
const logSize = (f: string) => (fs.existsSync(f) ? fs.statSync(f).size : 0);

export async function runOnDemandBench(o: OnDemandOpts): Promise<{ result: OnDemandResult; markdown: string }> {
  const log = o.log ?? ((s: string) => process.stderr.write(`[ondemand] ${s}\n`));
  const t0 = Date.now();
  const startedAt = new Date().toISOString();
  const loadStart = sampleLoad();
  const problems: string[] = [];
  const w = (p: string) => path.join(o.workDir, p);
  const links = o.links ?? (o.quick ? ['lo', '1gbit'] : Object.keys(RATES));
  for (const l of links) if (!(l in RATES)) throw new Error(`unknown link ${l} (${Object.keys(RATES).join(', ')})`);
  const raw = path.join(o.corpusDir, `${IMAGE}.raw`);
  const tmp = w('tmp');
  for (const d of ['files', 'tmp', 'caches']) fs.mkdirSync(w(d), { recursive: true });

  // setup, kept between runs
  const originDir = w('origin');
  let store = await LocalStore.open(originDir);
  if (!store.index.getImage(IMAGE, 'latest')) {
    log(`importing ${IMAGE}`);
    const r = run(process.execPath, [VMDN, 'import', path.join(o.corpusDir, `${IMAGE}.qcow2`), '--name', IMAGE, '--store', originDir, '--json', '--no-progress']);
    if (r.code !== 0) throw new Error(`import ${IMAGE}: ${r.stderr}`);
  }
  const objs = await imageObjects(store, IMAGE);
  await store.close();
  const zst = w(`files/${IMAGE}.raw.zst`);
  if (!fs.existsSync(zst)) {
    log(`compressing ${IMAGE}.raw with zstd (default level)`);
    const r = run('zstd', ['-q', '-T0', raw, '-o', `${zst}.tmp`]);
    if (r.code !== 0) throw new Error(`zstd: ${r.stderr}`);
    fs.renameSync(`${zst}.tmp`, zst);
  }
  const caibx = w(`files/${IMAGE}.caibx`);
  if (!fs.existsSync(caibx)) {
    log(`casync make ${IMAGE}.raw`);
    const r = run('casync', ['make', `--store=${w(`files/${IMAGE}.castr`)}`, `${caibx}.tmp.caibx`, raw]);
    if (r.code !== 0) throw new Error(`casync make: ${r.stderr}`);
    fs.renameSync(`${caibx}.tmp.caibx`, caibx);
  }
  const rounds = Math.max(1, Math.floor(o.rounds ?? 3));
  const parts = new Set(o.parts ?? ['pulls', 'nbd', 'boots']);
  for (const p of parts) if (!['pulls', 'nbd', 'boots'].includes(p)) throw new Error(`unknown part ${p} (pulls, nbd, boots)`);
  const wantBoots = (o.boots ?? !o.quick) && parts.has('boots');
  const kernel = wantBoots && hasQemuSystem() ? extractKernel(raw, w('kernel')) : null;

  const link = new Link(DEFAULT_LINK, { onSignal: killTracked });
  const sides: Partial<Record<'lo' | 'ns', Side>> = {};
  const side = async (ns: boolean): Promise<Side> => {
    const key = ns ? 'ns' : 'lo';
    if (sides[key]) return sides[key]!;
    const host = ns ? link.c.nsIp : '127.0.0.1';
    const wrap = ns ? inNs(link.c) : undefined;
    const dir = w(`nginx-${key}`);
    const accessLog = path.join(dir, 'access.log');
    fs.mkdirSync(dir, { recursive: true });
    const nginx = await startNginx(dir, nginxStaticConf(dir, w('files'), { host, accessLog }), { host, wrap });
    const origin = await startVmdn(['serve', '--store', originDir], { host, wrap });
    return (sides[key] = { origin, nginx, accessLog });
  };
  const drop = () => (o.dropCaches === false ? false : dropCaches());
  const compare = (out: string) => (fs.existsSync(out) ? run('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'raw', raw, out]).code === 0 : false);

  const pullsOn = async (name: string): Promise<{ pulls: LinkPulls; pullJson?: { bytesDownloaded?: number } }> => {
    const bps = RATES[name]!;
    const ns = bps !== null;
    if (ns) link.setRate(bps);
    const s = await side(ns);
    const out = w('tmp/out.raw');
    const wire = () => (ns ? link.serverTxBytes() : NaN);
    const one = async (cmd: string, args: string[], payload: () => Promise<number>): Promise<PullRun & { json?: unknown }> => {
      fs.rmSync(out, { force: true });
      drop();
      const tx0 = wire();
      const cpu0 = cpuSecondsOf(s.origin.pid);
      const t = await timed(cmd, args, { tmpDir: tmp, timeoutMs: 15 * 60_000 });
      const tx = wire() - tx0;
      const serverCpuSeconds = cmd === process.execPath ? cpuSecondsOf(s.origin.pid) - cpu0 : undefined;
      const bytes = await payload();
      const error = t.exitCode !== 0 ? `exit ${t.exitCode}: ${t.stderrTail.trim().split('\n').slice(-2).join(' | ')}` : undefined;
      if (error) problems.push(`${name}: ${t.cmd}: ${error}`);
      const identical = error ? null : compare(out);
      if (identical === false) problems.push(`${name}: ${t.cmd}: output differs from ${raw}`);
      fs.rmSync(out, { force: true });
      let json: unknown;
      try {
        json = JSON.parse(t.stdout);
      } catch {
        /* not vmdn */
      }
      return { seconds: t.seconds, maxRssBytes: t.maxRssBytes, cpuSeconds: t.cpuSeconds, ...(serverCpuSeconds !== undefined ? { serverCpuSeconds } : {}), bytes, ...(ns ? { wireBytes: tx } : {}), identical, ...(error ? { error } : {}), json };
    };
    // vmdn and curl|zstd alternate for `rounds` rounds (median shown); casync, an anchor only for reference, runs once
    const vs: Array<PullRun & { json?: unknown }> = [];
    const cs: Array<PullRun & { json?: unknown }> = [];
    let ca: (PullRun & { json?: unknown }) | undefined;
    const cache = w(`caches/pull-${name}`);
    for (let i = 0; i < rounds; i++) {
      log(`${name}: vmdn pull (round ${i + 1} of ${rounds})`);
      fs.rmSync(cache, { recursive: true, force: true });
      const before = (await s.origin.stats()).objectBytesServed!;
      vs.push(await one(process.execPath, [VMDN, 'pull', s.origin.url, IMAGE, out, '--cache', cache, '--json', '--no-progress'], async () => (await s.origin.stats()).objectBytesServed! - before));
      log(`${name}: curl | zstd -d (round ${i + 1} of ${rounds})`);
      const at = logSize(s.accessLog);
      cs.push(await one('bash', ['-o', 'pipefail', '-c', 'curl -sSf "$1" | zstd -q -d -f -o "$2"', '_', `${s.nginx.url}/${IMAGE}.raw.zst`, out], async () => nginxBytes(s.accessLog, at)));
      if (ca) continue;
      log(`${name}: casync extract`);
      const at2 = logSize(s.accessLog);
      ca = await one('casync', ['extract', `--store=${s.nginx.url}/${IMAGE}.castr`, `${s.nginx.url}/${IMAGE}.caibx`, out], async () => nginxBytes(s.accessLog, at2));
    }
    // the loopback cache (the last round's: every object) is what the NBD part serves
    if (name !== 'lo') fs.rmSync(cache, { recursive: true, force: true });
    const v = medianRound(vs);
    const c = medianRound(cs);
    const pj = v.json as { bytesDownloaded?: number; phases?: { download: number; write: number } } | undefined;
    const strip = ({ json: _j, ...r }: PullRun & { json?: unknown }) => r;
    return { pulls: { link: name, bps, ...(ns ? { qdisc: link.qdisc() } : {}), vmdn: { ...strip(v), ...(pj?.phases ? { phases: pj.phases } : {}) }, curlZstd: strip(c), casync: strip(ca!) }, pullJson: pj };
  };

  const result: OnDemandResult = {
    startedAt, finishedAt: '', seconds: 0, quick: !!o.quick, load: { start: loadStart, end: loadStart }, image: IMAGE,
    virtualBytes: fs.statSync(raw).size, storedBytes: objs.storedBytes, fullPullBytes: null, pulls: [], nbd: null, lazy: null, boots: {}, problems,
  };
  try {
    if (links.some((l) => RATES[l] !== null) || wantBoots) link.setup();
    for (const name of parts.has('pulls') ? links : []) {
      const p = await pullsOn(name);
      result.pulls.push(p.pulls);
      if (name === 'lo' || result.fullPullBytes === null) result.fullPullBytes = p.pullJson?.bytesDownloaded ?? null;
    }

    if (parts.has('nbd')) await nbdParts();
    if (wantBoots) await boots(IMAGE, result, { originDir, drop, kernel, raw, link, side, log, w, tmp });
  } finally {
    for (const s of Object.values(sides)) {
      await s.origin.stop();
      await s.nginx.stop();
    }
    link.teardown();
    fs.rmSync(w('caches'), { recursive: true, force: true });
    fs.rmSync(w('tmp/out.raw'), { force: true });
  }
  result.finishedAt = new Date().toISOString();
  result.seconds = (Date.now() - t0) / 1000;
  result.load.end = sampleLoad();
  return { result, markdown: renderOnDemand(result) };

  async function nbdParts(): Promise<void> {
    // NBD throughput of the fully cached image: the loopback pull's cache holds every object
    const lo = await side(false);
    const full = w('caches/pull-lo');
    if (!fs.existsSync(full)) {
      log('filling a cache for the NBD run (vmdn pull on loopback)');
      run(process.execPath, [VMDN, 'pull', lo.origin.url, IMAGE, w('tmp/out.raw'), '--cache', full, '--json', '--no-progress']);
      fs.rmSync(w('tmp/out.raw'), { force: true });
    }
    // rounds alternate the two servers: first each from a dropped page cache, then each with it warm
    const cached = async (cold: boolean): Promise<{ vmdn: NbdRead; qemuNbd: NbdRead }> => {
      const vns: NbdRead[] = [];
      const qns: NbdRead[] = [];
      for (let i = 0; i < rounds; i++) {
        log(`NBD: vmdn nbd --from (fully cached) vs qemu-nbd of the raw file, page cache ${cold ? 'dropped' : 'warm'} (round ${i + 1} of ${rounds})`);
        if (cold) drop();
        vns.push(await nbdRead({ url: lo.origin.url, image: IMAGE, cache: full, tmpDir: tmp, raw }));
        if (cold) drop();
        qns.push(await qemuNbdRead({ raw, tmpDir: tmp }));
      }
      for (const r of [...vns, ...qns]) if (r.error) problems.push(`nbd: ${r.error}`);
      return { vmdn: medianRound(vns), qemuNbd: medianRound(qns) };
    };
    result.nbd = { ...(await cached(true)), link: 'lo' };
    // what is left when the disk is out of it: the pack files and the raw file were both just read
    result.nbdWarm = await cached(false);

    // a cold lazy read while the fill runs, on the fastest real link measured
    const lazyLink = links.includes('1gbit') ? '1gbit' : links.find((l) => RATES[l] !== null) ?? 'lo';
    if (RATES[lazyLink] !== null) link.setRate(RATES[lazyLink]!);
    const ls = await side(RATES[lazyLink] !== null);
    const cold = w('caches/lazy');
    fs.rmSync(cold, { recursive: true, force: true });
    log(`NBD: cold vmdn nbd --from on ${lazyLink}, read end to end while it fills`);
    const b0 = (await ls.origin.stats()).objectBytesServed!;
    drop();
    const lz = await nbdRead({ url: ls.origin.url, image: IMAGE, cache: cold, tmpDir: tmp, raw });
    result.lazy = { ...lz, link: lazyLink, originBytes: (await ls.origin.stats()).objectBytesServed! - b0 };
    fs.rmSync(cold, { recursive: true, force: true });
    if (lz.error) problems.push(`nbd: ${lz.error}`);
  }
}


/** The section's options from the environment (BENCH_OD_*; see ondemand-main.ts). */
export function onDemandOptsFromEnv(corpusDir: string, env: NodeJS.ProcessEnv): OnDemandOpts {
  const quick = env.BENCH_OD_QUICK === '1';
  const links = env.BENCH_OD_LINKS ? env.BENCH_OD_LINKS.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  const parts = env.BENCH_OD_PARTS ? env.BENCH_OD_PARTS.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  const boots = env.BENCH_OD_BOOTS === undefined ? undefined : env.BENCH_OD_BOOTS !== '0';
  return { corpusDir, workDir: path.resolve(env.BENCH_OD_WORKDIR ?? '/var/tmp/vmdn-odbench'), quick, ...(links ? { links } : {}), ...(parts ? { parts } : {}), ...(boots === undefined ? {} : { boots }), dropCaches: env.BENCH_DROP_CACHES !== '0', ...(env.BENCH_OD_ROUNDS ? { rounds: Number(env.BENCH_OD_ROUNDS) } : {}) };
}
