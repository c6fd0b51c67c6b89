/**
 * Boots for the on-demand section: the baseline (qemu-system-x86_64 on the
 * local raw file, direct kernel boot) and `vmdn boot` (one function, so the
 * interface is easy to adapt). Both are timed to `login:` on the serial console.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { timed, track, untrack } from './measure.js';
import { VMDN } from './net-procs.js';
import type { BootRun, NbdCounters } from './ondemand-report.js';

export const LOGIN = 'login:';
/** The guest `vmdn boot` runs (1 GiB, one vCPU, TCG, no network, serial on stdio), for the baseline too. */
export const GUEST_ARGS = ['-machine', 'accel=tcg', '-m', '1024', '-smp', '1', '-nographic', '-nic', 'none', '-no-reboot'];
export const APPEND = 'root=/dev/vda1 rw console=ttyS0';

export const hasQemuSystem = () => spawnSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' }).status === 0;
export const hasVmdnBoot = () => spawnSync(process.execPath, [VMDN, 'boot', '--help'], { stdio: 'ignore' }).status === 0;

/** The image's kernel and initrd, read from the raw file with `vmdn cat` (kept between runs). */
export function extractKernel(raw: string, outDir: string): { kernel: string; initrd: string } {
  const ls = spawnSync(process.execPath, [VMDN, 'ls', raw, '/boot'], { encoding: 'utf8' });
  if (ls.status !== 0) throw new Error(`vmdn ls ${raw} /boot: ${ls.stderr}`);
  const names = ls.stdout.split('\n').map((s) => s.trim());
  const pick = (prefix: string) => {
    const n = names.filter((x) => x.startsWith(prefix)).sort().pop();
    if (!n) throw new Error(`no /boot/${prefix}* in ${raw}`);
    const out = path.join(outDir, n);
    if (!fs.existsSync(out)) {
      const r = spawnSync(process.execPath, [VMDN, 'cat', raw, `/boot/${n}`], { maxBuffer: 1 << 30 });
      if (r.status !== 0) throw new Error(`vmdn cat ${raw} /boot/${n}: ${r.stderr}`);
      fs.writeFileSync(`${out}.tmp`, r.stdout);
      fs.renameSync(`${out}.tmp`, out);
    }
    return out;
  };
  fs.mkdirSync(outDir, { recursive: true });
  return { kernel: pick('vmlinuz-'), initrd: pick('initrd.img-') };
}

/** qemu-system-x86_64 on the raw file (snapshot=on: the file is not changed), ms from start to `login:`. */
export async function localBoot(o: { raw: string; kernel: string; initrd: string; timeoutMs: number }): Promise<BootRun> {
  const args = [...GUEST_ARGS, '-kernel', o.kernel, '-initrd', o.initrd, '-append', APPEND, '-drive', `file=${o.raw},format=raw,if=virtio,snapshot=on`];
  const t0 = Date.now();
  const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  track(-child.pid!);
  let out = '';
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-2000)));
  const ms = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => resolve(null), o.timeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      out = (out + b.toString('latin1')).slice(-4096);
      if (out.includes(LOGIN)) {
        clearTimeout(timer);
        resolve(Date.now() - t0);
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(null);
    });
  });
  const exited = new Promise<void>((r) => (child.exitCode !== null ? r() : child.once('exit', () => r())));
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    /* already gone */
  }
  await exited;
  untrack(-child.pid!);
  return ms === null ? { ms: null, error: `no ${LOGIN} within ${o.timeoutMs / 1000} s: ${err.trim().slice(-200) || out.slice(-200)}` } : { ms };
}

export interface VmdnBootOpts {
  image: string;
  /** serve the image from an origin into a cache (`--from URL --cache DIR`) ... */
  from?: { url: string; cache: string };
  /** ... or from a local store (`--store DIR`) */
  store?: string;
  noFill?: boolean;
  recordProfile?: boolean;
  timeoutSec: number;
  tmpDir: string;
}

/**
 * `vmdn boot IMAGE (--from URL --cache DIR | --store DIR) --until login: --timeout SEC --json`
 * (branch `boot`; `--record-profile` from branch `profile`): it exits 0 at the
 * match and prints one JSON document with msToMatch (from the command's start)
 * and the nbd counters under `counters`, read loosely until that interface settles.
 */
export async function vmdnBoot(o: VmdnBootOpts): Promise<BootRun> {
  const args = [VMDN, 'boot', o.image, '--until', LOGIN, '--timeout', String(o.timeoutSec), '--json'];
  if (o.from) args.push('--from', o.from.url, '--cache', o.from.cache);
  if (o.store) args.push('--store', o.store);
  if (o.noFill) args.push('--no-fill');
  if (o.recordProfile) args.push('--record-profile');
  const t = await timed(process.execPath, args, { tmpDir: o.tmpDir, timeoutMs: (o.timeoutSec + 60) * 1000 });
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(t.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop() ?? t.stdout) as Record<string, unknown>;
  } catch {
    try {
      json = JSON.parse(t.stdout) as Record<string, unknown>;
    } catch {
      /* not JSON: reported below */
    }
  }
  const ms = typeof json.msToMatch === 'number' ? json.msToMatch : null;
  const counters = (json.counters ?? json.nbd ?? json) as NbdCounters;
  // vmdn's errors come as {"error":{code,message}} on stdout with --json; the console is on stderr
  const e = json.error as { code?: string; message?: string } | undefined;
  const why = e ? `${e.code ?? ''} ${e.message ?? ''}`.trim() : t.stderrTail.trim().split('\n').slice(-2).join(' | ');
  const error = t.exitCode !== 0 || ms === null ? `exit ${t.exitCode}${t.timedOut ? ' (timed out)' : ''}: ${why}` : undefined;
  return { ms, counters, maxRssBytes: t.maxRssBytes, ...(error ? { error } : {}) };
}
