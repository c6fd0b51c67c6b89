/**
 * The boots part of the on-demand section, in order: the local raw file
 * (baseline), `vmdn boot` on a cold site without a profile, recording a
 * profile on the origin's store, then a fresh site with the profile; the
 * local and the profiled boots repeated in pairs. One boot itself is run by
 * ondemand-boot.ts.
 */
import fs from 'node:fs';
import { encodeObject } from '../src/store/codec.js';
import type { Server } from './net-procs.js';
import { RATES, type Link } from './netns.js';
import { hasVmdnBoot, localBoot, vmdnBoot } from './ondemand-boot.js';
import type { BootRun, OnDemandResult } from './ondemand-report.js';

export interface BootCtx {
  originDir: string;
  drop: () => boolean;
  kernel: { kernel: string; initrd: string } | null;
  raw: string;
  link: Link;
  side: (ns: boolean) => Promise<{ origin: Server }>;
  log: (s: string) => void;
  w: (p: string) => string;
  tmp: string;
}

/** The four boots; each is skipped, with the reason in the report, when its tool is missing. */
export async function boots(image: string, r: OnDemandResult, c: BootCtx): Promise<void> {
  const timeoutSec = Number(process.env.BENCH_OD_BOOT_TIMEOUT ?? 300);
  if (!c.kernel) {
    r.boots.note = 'qemu-system-x86_64 is not installed: no boots (scripts/ensure-debian-tools.mjs bench installs qemu-system-x86).';
    return;
  }
  c.log('boot: local raw file');
  c.drop();
  r.boots.local = { ...(await localBoot({ raw: c.raw, ...c.kernel, timeoutMs: timeoutSec * 1000 })), link: 'local' };
  r.boots.bootFiles = storedEstimate([c.kernel.kernel, c.kernel.initrd]);
  if (r.boots.local.error) r.problems.push(`local boot: ${r.boots.local.error}`);
  if (!hasVmdnBoot()) {
    r.boots.note = '`vmdn boot` is not built in this tree (branch `boot`): only the local boot ran.';
    return;
  }
  const at = async (link: string, boot: (url: string, cache: string) => Promise<BootRun>): Promise<BootRun> => {
    const bps = RATES[link]!;
    if (bps !== null) c.link.setRate(bps);
    const s = await c.side(bps !== null);
    const cache = c.w(`caches/boot-${link}`);
    fs.rmSync(cache, { recursive: true, force: true });
    c.drop();
    const b0 = (await s.origin.stats()).objectBytesServed!;
    const b = await boot(s.origin.url, cache);
    fs.rmSync(cache, { recursive: true, force: true });
    if (b.error) r.problems.push(`vmdn boot on ${link}: ${b.error}`);
    return { ...b, link, originBytes: (await s.origin.stats()).objectBytesServed! - b0 };
  };
  const o = { image, timeoutSec, tmpDir: c.tmp };
  c.log('boot: vmdn boot, cold site, no profile, --no-fill (100mbit)');
  r.boots.cold = await at('100mbit', (url, cache) => vmdnBoot({ ...o, from: { url, cache }, noFill: true }));
  // the publisher records the profile on its own store; the origin serving that store hands it out
  c.log('boot: vmdn boot --record-profile on the origin\'s store');
  c.drop();
  r.boots.record = { ...(await vmdnBoot({ ...o, store: c.originDir, recordProfile: true })), link: 'local store' };
  if (r.boots.record.error) r.problems.push(`vmdn boot --record-profile: ${r.boots.record.error}`);
  c.log('boot: vmdn boot with the profile, fresh site (100mbit)');
  const profiled = () => at('100mbit', (url, cache) => vmdnBoot({ ...o, from: { url, cache } }));
  r.boots.profiled = await profiled();
  // A TCG boot's time swings by seconds with the load on 2 cores: the local and
  // the profiled boot are repeated in pairs, so both meet the same load, and
  // each row shows its median run.
  const runs = Math.max(1, Number(process.env.BENCH_OD_BOOT_RUNS ?? 3));
  const locals = [r.boots.local];
  const profileds = [r.boots.profiled];
  for (let i = 1; i < runs; i++) {
    c.log(`boot: pair ${i + 1} of ${runs}: local raw file, then vmdn boot with the profile (100mbit)`);
    c.drop();
    locals.push({ ...(await localBoot({ raw: c.raw, ...c.kernel, timeoutMs: timeoutSec * 1000 })), link: 'local' });
    profileds.push(await profiled());
  }
  r.boots.local = medianRun(locals);
  r.boots.profiled = medianRun(profileds);
}

/** The files' bytes, and as zstd objects of 64 KiB at the store's level (what fetching them costs at least). */
function storedEstimate(files: string[]): { rawBytes: number; storedBytes: number } {
  let rawBytes = 0;
  let storedBytes = 0;
  for (const f of files) {
    const data = fs.readFileSync(f);
    rawBytes += data.length;
    for (let at = 0; at < data.length; at += 64 << 10) storedBytes += encodeObject(data.subarray(at, at + (64 << 10))).length;
  }
  return { rawBytes, storedBytes };
}

/** The run with the median time (failed runs count as slowest), carrying every run's time. */
function medianRun(runs: BootRun[]): BootRun {
  const sorted = [...runs].sort((a, b) => (a.ms ?? Infinity) - (b.ms ?? Infinity));
  return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, runsMs: runs.map((x) => x.ms) };
}
