/**
 * The on-demand section's result shape, its targets (issue 13) and its
 * Markdown. Pure: computed from the numbers alone (unit-tested).
 */
import type { LoadSample } from './measure.js';
import type { Target } from './types.js';
import { MB, fin, f1, f2, mb, ratio } from './numbers.js';

export { ratio };

export interface PullRun {
  seconds: number;
  maxRssBytes: number;
  /** user + system CPU seconds of the client (all its processes) */
  cpuSeconds?: number;
  /** CPU seconds the server process spent meanwhile (vmdn serve; nginx's sendfile is not counted) */
  serverCpuSeconds?: number;
  /** payload bytes the servers sent (vmdn: origin /stats object bytes; curl, casync: nginx body bytes) */
  bytes: number;
  /** bytes on the wire from the server side of the veth (all headers included); absent on loopback */
  wireBytes?: number;
  identical: boolean | null;
  error?: string;
  /** Every round's seconds, in the order run, when the pull was repeated (the row shows the median round). */
  runs?: number[];
}

export interface LinkPulls {
  link: string;
  /** bits per second, null for loopback */
  bps: number | null;
  qdisc?: string;
  vmdn: PullRun & { phases?: { download: number; write: number } };
  curlZstd: PullRun;
  casync: PullRun;
}

export interface NbdCounters {
  guestBytesRead?: number;
  demandObjects?: number;
  demandBytes?: number;
  prefilledObjects?: number;
  prefilledBytes?: number;
  objects?: number;
  cachedObjects?: number;
  fillDone?: boolean;
}

export interface NbdRead {
  /** `qemu-img convert` from the export to a raw file */
  seconds: number;
  peakRssBytes?: number;
  /** CPU seconds of the NBD server during the read */
  serverCpuSeconds?: number;
  identical: boolean | null;
  error?: string;
  /** Every round's seconds, in the order run, when the read was repeated (the row shows the median round). */
  runs?: number[];
}

/**
 * The median round of repeated runs (the lower middle one of an even count),
 * with every round's seconds beside it; a failed round counts as the slowest.
 */
export function medianRound<T extends { seconds: number; error?: string }>(rounds: T[]): T & { runs: number[] } {
  if (!rounds.length) throw new Error('medianRound: no rounds');
  const key = (r: T) => (r.error ? Infinity : r.seconds);
  const sorted = [...rounds].sort((a, b) => key(a) - key(b));
  return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, runs: rounds.map((r) => r.seconds) };
}

export interface BootRun {
  /** time to the login prompt on the serial console */
  ms: number | null;
  link?: string;
  /** origin object bytes sent during the boot (its /stats) */
  originBytes?: number;
  counters?: NbdCounters;
  maxRssBytes?: number;
  error?: string;
  /** Every run's time to login when the boot was repeated (the row shows the median run). */
  runsMs?: Array<number | null>;
}

export interface OnDemandResult {
  startedAt: string;
  finishedAt: string;
  seconds: number;
  quick: boolean;
  load: { start: LoadSample; end: LoadSample };
  image: string;
  virtualBytes: number;
  /** stored bytes of every object of the image (what a full pull needs) */
  storedBytes: number;
  /** bytes a cold `vmdn pull` of the image downloaded (its --json bytesDownloaded, loopback run); null when no pull ran (then storedBytes stands in) */
  fullPullBytes: number | null;
  pulls: LinkPulls[];
  /** Page cache dropped before each read. */
  nbd: { vmdn: NbdRead; qemuNbd: NbdRead; link: string } | null;
  /** The same reads again with the page cache warm (pack files and raw file read just before). */
  nbdWarm?: { vmdn: NbdRead; qemuNbd: NbdRead } | null;
  /** a cold `vmdn nbd --from` read end to end by qemu-img while its fill runs */
  lazy: (NbdRead & { link: string; counters?: NbdCounters; originBytes?: number }) | null;
  boots: {
    /** why boots were skipped or partly skipped */
    note?: string;
    local?: BootRun;
    /** cold site, no profile, no fill: what the guest's reads alone fetch */
    cold?: BootRun;
    record?: BootRun;
    /** fresh site with the recorded profile */
    profiled?: BootRun;
    /** the kernel and initrd (fetched before qemu can start): bytes, and as zstd objects at the store's level */
    bootFiles?: { rawBytes: number; storedBytes: number };
  };
  problems: string[];
}

const verdict = (r: number | null, ok: (r: number) => boolean) => (r === null ? null : ok(r));

/** Full-pull limit vs curl|zstd per link: 1.0x on real links, 1.5x on loopback. */
export const pullLimit = (link: string) => (link === 'lo' ? 1.5 : 1.0);

/** What no delivery can beat on this image and machine: shown beside the targets, without a verdict. */
export function onDemandLimits(r: OnDemandResult): Target[] {
  const out: Target[] = [];
  const { local } = r.boots;
  const full = r.fullPullBytes ?? r.storedBytes;
  const bf = r.boots.bootFiles;
  if (bf && fin(full)) out.push({ target: 'limit of the bytes before login: the kernel and initrd alone (fetched before qemu starts; incompressible) / full pull', measured: `${mb(bf.storedBytes)} MB / ${mb(full)} MB = ${(bf.storedBytes / full! * 100).toFixed(1)} % (+ the root filesystem reads)`, threshold: 'physical limit', met: null });
  const pull100 = r.pulls.find((p) => p.link === (r.boots.profiled?.link ?? '100mbit'))?.vmdn.seconds;
  const pullBoot = fin(pull100) && fin(local?.ms) ? pull100 + local!.ms! / 1000 : null;
  // a VM reached on demand cannot boot faster than from a local file
  const floor = ratio(fin(local?.ms) ? local!.ms! / 1000 : null, pullBoot);
  if (floor !== null) out.push({ target: 'limit of the time to login with a profile / (full pull + local boot): a boot as fast as from a local file, local boot / (full pull + local boot)', measured: `${f1(local!.ms! / 1000)} s / ${f1(pullBoot)} s = ${f2(floor)}x`, threshold: 'physical limit', met: null });
  return out;
}

export function onDemandTargets(r: OnDemandResult): Target[] {
  const t: Target[] = [];
  const { local, cold, record } = r.boots;
  // a fresh-site boot after a failed recording had no profile to use: not the figure the target asks for
  const profiled = record?.error ? undefined : r.boots.profiled;
  const read = cold?.counters?.demandBytes;
  const rRead = ratio(cold?.originBytes, read);
  t.push({ target: 'bytes before login, cold site, no profile / stored bytes of the objects the guest read', measured: `${mb(cold?.originBytes)} MB / ${mb(read)} MB = ${f2(rRead)}x`, threshold: '<= 1.5x', met: verdict(rRead, (x) => x <= 1.5) });
  const full = r.fullPullBytes ?? r.storedBytes;
  const rFull = ratio(cold?.originBytes, full);
  t.push({ target: `bytes before login, cold site, no profile / full pull of ${r.image}`, measured: `${mb(cold?.originBytes)} MB / ${mb(full)} MB${r.fullPullBytes === null ? ' (stored bytes: no pull ran)' : ''} = ${fin(rFull) ? (rFull * 100).toFixed(1) : 'n/a'} %`, threshold: '<= 15 %', met: verdict(rFull, (x) => x <= 0.15) });
  const rLocal = ratio(profiled?.ms, local?.ms);
  t.push({ target: `time to login with a profile, fresh site at ${profiled?.link ?? '100mbit'} / boot from a local raw file`, measured: `${f1(fin(profiled?.ms) ? profiled!.ms! / 1000 : null)} s / ${f1(fin(local?.ms) ? local!.ms! / 1000 : null)} s = ${f2(rLocal)}x`, threshold: '<= 1.2x', met: verdict(rLocal, (x) => x <= 1.2) });
  const pull100 = r.pulls.find((p) => p.link === (profiled?.link ?? '100mbit'))?.vmdn.seconds;
  const pullBoot = fin(pull100) && fin(local?.ms) ? pull100 + local!.ms! / 1000 : null;
  const rPullBoot = ratio(fin(profiled?.ms) ? profiled!.ms! / 1000 : null, pullBoot);
  t.push({ target: `time to login with a profile / (full vmdn pull at ${profiled?.link ?? '100mbit'} + local boot)`, measured: `${f1(fin(profiled?.ms) ? profiled!.ms! / 1000 : null)} s / (${f1(pull100)} + ${f1(fin(local?.ms) ? local!.ms! / 1000 : null)}) s = ${f2(rPullBoot)}x`, threshold: '<= 0.5x', met: verdict(rPullBoot, (x) => x <= 0.5) });
  for (const p of r.pulls) {
    const x = p.vmdn.error || p.curlZstd.error ? null : ratio(p.vmdn.seconds, p.curlZstd.seconds);
    const lim = pullLimit(p.link);
    t.push({ target: `full cold pull of ${r.image} on ${p.link}: vmdn pull / curl|zstd (casync extract ${f1(p.casync.seconds)} s)`, measured: `${f1(p.vmdn.seconds)} s / ${f1(p.curlZstd.seconds)} s = ${f2(x)}x`, threshold: `<= ${lim.toFixed(1)}x`, met: verdict(x, (v) => v <= lim) });
  }
  const n = r.nbd;
  const tput = n && !n.vmdn.error && !n.qemuNbd.error ? ratio(n.qemuNbd.seconds, n.vmdn.seconds) : null;
  t.push({ target: 'NBD throughput of a fully cached image (qemu-img convert): vmdn nbd / qemu-nbd of the raw file', measured: n ? `${f1(r.virtualBytes / MB / n.vmdn.seconds)} / ${f1(r.virtualBytes / MB / n.qemuNbd.seconds)} MB/s = ${f2(tput)}x` : 'n/a', threshold: '>= 0.7x', met: verdict(tput, (x) => x >= 0.7) });
  const nw = r.nbdWarm;
  if (nw) {
    const warm = !nw.vmdn.error && !nw.qemuNbd.error ? ratio(nw.qemuNbd.seconds, nw.vmdn.seconds) : null;
    t.push({ target: 'NBD throughput of a fully cached image, page cache warm: vmdn nbd / qemu-nbd of the raw file', measured: `${f1(r.virtualBytes / MB / nw.vmdn.seconds)} / ${f1(r.virtualBytes / MB / nw.qemuNbd.seconds)} MB/s = ${f2(warm)}x`, threshold: '>= 0.7x', met: verdict(warm, (x) => x >= 0.7) });
  }
  const rss = [n?.vmdn.peakRssBytes, r.lazy?.peakRssBytes].filter(fin);
  const peak = rss.length ? Math.max(...rss) : null;
  t.push({ target: 'peak RSS of vmdn nbd (cached throughput run; lazy run)', measured: `${mb(n?.vmdn.peakRssBytes)} MB; ${mb(r.lazy?.peakRssBytes)} MB`, threshold: '< 300 MB', met: verdict(peak, (x) => x < 300 * MB) });
  return t;
}

const metText = (m: boolean | null) => (m === null ? 'not measured' : m ? '**met**' : '**not met**');
/** A table row; a `|` inside a cell (curl | zstd) is escaped so it does not split the cell. */
const row = (cells: (string | number)[]) => `| ${cells.map((c) => String(c).replace(/(?<!\\)\|/g, '\\|')).join(' | ')} |`;
const cpu = (p: PullRun) => `${f1(p.cpuSeconds)}${fin(p.serverCpuSeconds) ? ` + ${f1(p.serverCpuSeconds)}` : ''}`;
/** Seconds, with every round's when the run was repeated. */
const secs = (x: { seconds: number; runs?: number[] }) => `${f1(x.seconds)}${x.runs && x.runs.length > 1 ? ` (median of ${x.runs.map((s) => f1(s)).join(', ')})` : ''}`;
const pullCells = (p: PullRun) => [p.error ? `failed: ${p.error.slice(0, 80)}` : secs(p), cpu(p), mb(p.bytes), mb(p.wireBytes), mb(p.maxRssBytes), p.identical === null ? '?' : p.identical ? 'yes' : '**no**'];

export function renderOnDemand(r: OnDemandResult): string {
  const L: string[] = ['## On-demand delivery (issue 13)', ''];
  L.push(`Run ${r.startedAt} → ${r.finishedAt} (${f1(r.seconds / 60)} min${r.quick ? ', **quick mode**: not the full set of links' : ''}). Load average (1/5/15 min) at start ${r.load.start.loadavg.join(' / ')}, at end ${r.load.end.loadavg.join(' / ')}. Image ${r.image}: ${mb(r.virtualBytes)} MB virtual, ${mb(r.storedBytes)} MB of stored objects.`, '');
  L.push('| target | measured | threshold | verdict |', '|:--|:--|:--|:--|');
  for (const t of onDemandTargets(r)) L.push(row([t.target, t.measured, t.threshold, metText(t.met)]));
  for (const t of onDemandLimits(r)) L.push(row([t.target, t.measured, t.threshold, 'limit (no verdict)']));
  L.push('', '### Full cold pull to a raw file', '');
  L.push('Servers (`vmdn serve`, nginx) run in a network namespace, clients in the host namespace, over a veth pair with `tc` tbf on both ends (`lo`: both on loopback). vmdn: `vmdn pull URL base out.raw` into an empty cache; curl|zstd: `curl URL/base.raw.zst | zstd -d -o out.raw` (sparse); casync: `casync extract --store=URL/base.castr URL/base.caibx out.raw`. Page cache dropped before each. vmdn and curl|zstd alternate for several rounds (the servers stay up: an origin is a long-running server, and its first pull pays its start-up); each row is the median round, casync runs once. Bytes: payload the server sent; wire: the namespace side\'s veth tx bytes. CPU: user + system seconds of the client (GNU time), + the vmdn origin\'s (nginx serves with sendfile).', '');
  L.push('| link | tool | s | CPU s | payload MB | wire MB | peak RSS MB | identical |', '|:--|:--|--:|--:|--:|--:|--:|:--|');
  for (const p of r.pulls) {
    const ph = p.vmdn.phases ? ` (download ${f1(p.vmdn.phases.download)} + write ${f1(p.vmdn.phases.write)})` : '';
    L.push(row([p.link, `vmdn pull${ph}`, ...pullCells(p.vmdn)]));
    L.push(row([p.link, 'curl | zstd -d', ...pullCells(p.curlZstd)]));
    L.push(row([p.link, 'casync extract', ...pullCells(p.casync)]));
  }
  if (r.nbd || r.lazy) {
    L.push('', '### NBD', '');
    L.push('| run | qemu-img convert s | MB/s of virtual size | server CPU s | server peak RSS MB | identical |', '|:--|--:|--:|--:|--:|:--|');
    const nr = (what: string, x: NbdRead) => row([what, x.error ? `failed: ${x.error.slice(0, 80)}` : secs(x), f1(r.virtualBytes / MB / x.seconds), f1(x.serverCpuSeconds), mb(x.peakRssBytes), x.identical === null ? '?' : x.identical ? 'yes' : '**no**']);
    if (r.nbd) L.push(nr(`vmdn nbd --from, fully cached (${r.nbd.link})`, r.nbd.vmdn), nr('qemu-nbd -r of the raw file', r.nbd.qemuNbd));
    if (r.nbdWarm) L.push(nr('vmdn nbd --from, fully cached, page cache warm', r.nbdWarm.vmdn), nr('qemu-nbd -r of the raw file, page cache warm', r.nbdWarm.qemuNbd));
    if (r.lazy) {
      L.push(nr(`vmdn nbd --from, cold cache, fill on (${r.lazy.link})`, r.lazy));
      const c = r.lazy.counters;
      if (c) L.push('', `Lazy run counters: demand ${c.demandObjects ?? 'n/a'} objects / ${mb(c.demandBytes)} MB, prefilled ${c.prefilledObjects ?? 'n/a'} / ${mb(c.prefilledBytes)} MB, origin sent ${mb(r.lazy.originBytes)} MB, fill done: ${c.fillDone ? 'yes' : 'no'}.`);
    }
    L.push('', 'Both servers answer block-status queries (base:allocation), so qemu-img convert skips the holes (vmdn reports holes under 64 KiB as data: qemu asks one extent at a time); the page cache is dropped before each run, so vmdn reads its cache\'s pack files cold and decodes and verifies every object, where qemu-nbd reads one raw file (three times the bytes: on a slow disk that favours vmdn). The warm rows read again with both in the page cache: there only CPU counts, and vmdn decodes and verifies every object. Rounds alternate vmdn and qemu-nbd; each row is the median round.');
  }
  L.push('', '### Boots (TCG, time to `login:` on the serial console)', '');
  const b = r.boots;
  if (b.note) L.push(b.note, '');
  if (!b.local && !b.cold && !b.record && !b.profiled) {
    if (!b.note) L.push('Not run in this run (quick mode, BENCH_OD_BOOTS=0 or BENCH_OD_PARTS without boots).');
    if (r.problems.length) L.push('', '### Problems', '', ...r.problems.map((p) => `- ${p.replace(/\n/g, ' ')}`));
    L.push('');
    return L.join('\n');
  }
  L.push('Local: `qemu-system-x86_64` with the kernel and initrd `vmdn cat` read from the raw file, the raw file as a virtio disk (snapshot=on), the guest `vmdn boot` runs (TCG, 1 GiB, 1 vCPU, no network); time from qemu\'s start. vmdn boot: its `msToMatch` (from the command\'s start: serving, the manifest, kernel and initrd included); origin MB from the origin\'s /stats, demand and prefilled from the nbd counters at the match. Peak RSS of the vmdn boot process tree (qemu included), from GNU time.', '');
  L.push('| boot | link | to login s | origin MB | demand objects / MB | prefilled MB | peak RSS MB (with qemu) |', '|:--|:--|--:|--:|--:|--:|--:|');
  const br = (what: string, x?: BootRun) => x && L.push(row([what, x.link ?? '-', x.error ? `failed: ${x.error.slice(0, 80)}` : `${f1(fin(x.ms) ? x.ms / 1000 : null)}${x.runsMs && x.runsMs.length > 1 ? ` (median of ${x.runsMs.map((m) => f1(fin(m) ? m / 1000 : null)).join(', ')})` : ''}`, mb(x.originBytes), `${x.counters?.demandObjects ?? 'n/a'} / ${mb(x.counters?.demandBytes)}`, mb(x.counters?.prefilledBytes), mb(x.maxRssBytes)]));
  br('local raw file, qemu-system-x86_64 direct kernel boot', b.local);
  br('vmdn boot, cold site, no profile, --no-fill', b.cold);
  br('vmdn boot --record-profile', b.record);
  br(b.record?.error ? 'vmdn boot, fresh site, fill on (no profile: the recording failed)' : 'vmdn boot with the profile, fresh site', b.profiled);
  if (r.problems.length) L.push('', '### Problems', '', ...r.problems.map((p) => `- ${p.replace(/\n/g, ' ')}`));
  L.push('');
  return L.join('\n');
}
