/**
 * `vmdn boot`: from an image name to a running VM. The image is served over
 * NBD on a private Unix socket (serve-image.ts, as `vmdn nbd` serves it,
 * lazily with `from`), its kernel and initrd are read out of that same device
 * (so with `from` their bytes are fetched once, verified and cached, and the
 * guest's later reads of them cost nothing), and qemu boots them directly
 * with the disk on virtio and the console on ttyS0. Everything made for the
 * run (the socket, the kernel copies) lives in one 0700 temporary directory
 * that is removed at the end, however the run ends.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
import type { Disk } from '../container/disk.js';
import type { BlockDevice } from './device.js';
import { serveImage, type ServeImageOptions, type ServedImage } from './serve-image.js';
import { copyOut, findBootFiles, MAX_INITRD, MAX_KERNEL } from './boot-files.js';
import { findQemu, kernelCommandLine, pickAccel, qemuArgs } from './boot-qemu.js';
import { VmdnError } from '../errors.js';

export interface BootOptions extends Omit<ServeImageOptions, 'listen' | 'onEvent'> {
  memoryMiB: number;
  cpus: number;
  /** Extra kernel arguments. */
  append?: string;
  /** Stop once a console line matches (the unfinished last line too: a login prompt ends without a newline). */
  until?: RegExp;
  timeoutMs?: number;
  qemuArgs: string[];
  /** 'inherit': qemu's stdio is ours (a terminal); else the console text is copied there (and watched). */
  console: 'inherit' | NodeJS.WritableStream;
  signal?: AbortSignal;
  /** Progress for a person (stderr). */
  onStatus?: (line: string) => void;
}

export interface BootFileReport {
  partition: number;
  path: string;
  bytes: number;
}

export interface BootReport {
  image: string;
  manifest: string;
  accel: 'kvm' | 'tcg';
  append: string;
  version: string | null;
  kernel: BootFileReport;
  initrd: BootFileReport | null;
  /** Whether --until matched (null without --until). */
  matched: boolean | null;
  /** From the start of the command: the kernel and initrd copied out, the first guest read over NBD, the match. */
  msToKernel: number;
  msToFirstRead: number | null;
  msToMatch: number | null;
  /** How qemu ended (null if vmdn stopped it). */
  qemuExit: { code: number | null; signal: string | null } | null;
  /** The NBD counters when the run ended (at the match with --until): guest bytes read, and with --from the lazy counters. */
  counters: Record<string, number | boolean>;
  /** With --record-profile: the boot profile stored (null if none was recorded). */
  profile: string | null;
}

/** The NBD device as a Disk, for the filesystem readers: reads see what the guest would. */
function deviceDisk(device: BlockDevice): Disk {
  return {
    format: 'nbd-device', virtualSize: device.size, clusterSize: 4096,
    async *extents() {
      yield { offset: 0, length: device.size, kind: 'data' as const };
    },
    read: (offset, length) => device.read(offset, length),
    close: async () => {},
  };
}

const QEMU_STOP_MS = 10_000;

export async function boot(o: BootOptions): Promise<BootReport> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const qemu = findQemu();
  // named like nbd's temporary overlays (vmdn-nbd-PID-...): a killed run's directory is removed by the next server
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `vmdn-nbd-${process.pid}-boot-`));
  let served: ServedImage | undefined;
  try {
    served = await serveImage({
      ...o, listen: { socket: path.join(tmp, 'nbd.sock') },
      onEvent: (e) => {
        if (e.event === 'error') process.stderr.write(`vmdn boot: nbd connection failed: ${e.why}\n`);
      },
    });
    o.signal?.throwIfAborted();
    const files = await findBootFiles(deviceDisk(served.opened.device));
    o.onStatus?.(`kernel ${files.kernel.path}${files.initrd ? `, initrd ${files.initrd.path}` : ', no initrd'} (partition ${files.kernel.partition}), root on partition ${files.rootPartition}`);
    const kernel = path.join(tmp, 'vmlinuz');
    const initrd = files.initrd ? path.join(tmp, 'initrd.img') : undefined;
    const kernelBytes = await copyOut(files.kernel, kernel, MAX_KERNEL, o.signal);
    const initrdBytes = files.initrd ? await copyOut(files.initrd, initrd!, MAX_INITRD, o.signal) : 0;
    const msToKernel = ms();
    const { accel, why: noKvm } = pickAccel('/dev/kvm', qemu);
    const append = kernelCommandLine(files.rootPartition, !!o.readOnly, o.append);
    const args = qemuArgs({ kernel, initrd, append, memoryMiB: o.memoryMiB, cpus: o.cpus, socket: path.join(tmp, 'nbd.sock'), readOnly: !!o.readOnly, accel, extra: o.qemuArgs });
    o.onStatus?.(`${accel === 'tcg' ? `no KVM (${noKvm}): emulating (TCG), slower; ` : ''}starting ${path.basename(qemu)} -append '${append}'`);
    const s = served;
    const counters = () => (s.counters ? { ...s.snapshot() } : { guestBytesRead: s.server.stats.bytesRead });
    const run = await runQemu(qemu, args, o, counters, ms);
    // stop serving now: a recorded profile is stored on close, and its digest is part of the report
    const { profile } = await served.close();
    return {
      image: served.name, manifest: served.opened.manifest, accel, append, version: files.version ?? null,
      kernel: { partition: files.kernel.partition, path: files.kernel.path, bytes: kernelBytes },
      initrd: files.initrd ? { partition: files.initrd.partition, path: files.initrd.path, bytes: initrdBytes } : null,
      matched: o.until ? run.matched : null, msToKernel, msToFirstRead: run.msToFirstRead, msToMatch: run.msToMatch,
      qemuExit: run.exit, counters: run.counters, profile: profile ?? null,
    };
  } catch (err) {
    if (o.signal?.aborted) throw new VmdnError('E_ABORTED', 'vmdn boot stopped by a signal', {}, { cause: err });
    throw err;
  } finally {
    try {
      // after a success the profile was stored above; a failed run's reads (no kernel, qemu died) are no boot's
      await served?.close({ keepProfile: false });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
}

interface QemuRun {
  matched: boolean;
  msToMatch: number | null;
  msToFirstRead: number | null;
  exit: { code: number | null; signal: string | null } | null;
  counters: Record<string, number | boolean>;
}

/**
 * Run qemu until it exits, the console matches `until`, the time is up or the
 * signal fires; qemu is always gone when this returns (SIGTERM, then SIGKILL).
 * A match ends it with success; qemu dying first, the timeout or the signal
 * are errors.
 */
async function runQemu(qemu: string, args: string[], o: BootOptions, counters: () => Record<string, number | boolean> & { guestBytesRead: number }, ms: () => number): Promise<QemuRun> {
  const watch = o.console !== 'inherit' || !!o.until;
  const sink = o.console === 'inherit' ? process.stdout : o.console;
  const child = spawn(qemu, args, { stdio: ['inherit', watch ? 'pipe' : 'inherit', 'inherit'] });
  const r: QemuRun = { matched: false, msToMatch: null, msToFirstRead: null, exit: null, counters: {} };
  const firstRead = setInterval(() => {
    if (counters().guestBytesRead === 0) return;
    r.msToFirstRead = ms();
    clearInterval(firstRead);
  }, 10);
  let exited = false;
  const exit = new Promise<'exit'>((resolve, reject) => {
    child.once('error', (err) => reject(new VmdnError('E_IO', `${qemu}: ${err.message}`, {}, { cause: err })));
    // 'close': after the console's last bytes were read, not only the process's end
    child.once('close', (code, signal) => {
      exited = true;
      r.exit = { code, signal };
      resolve('exit');
    });
  });
  let onMatch = () => {};
  const matched = new Promise<'match'>((resolve) => (onMatch = () => resolve('match')));
  if (watch) {
    const dec = new StringDecoder('utf8');
    let line = '';
    child.stdout!.on('data', (b: Buffer) => {
      sink.write(b);
      if (!o.until || r.matched) return;
      const parts = (line + dec.write(b)).split('\n');
      line = parts.pop()!.slice(-4096);
      for (const l of [...parts, line]) {
        if (o.until.test(l.replace(/\r/g, ''))) {
          r.matched = true;
          r.msToMatch = ms();
          onMatch();
          return;
        }
      }
    });
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    if (o.timeoutMs !== undefined) timer = setTimeout(() => resolve('timeout'), Math.max(0, o.timeoutMs - ms()));
  });
  const aborted = new Promise<'abort'>((resolve) => {
    if (o.signal?.aborted) resolve('abort');
    o.signal?.addEventListener('abort', () => resolve('abort'), { once: true });
  });
  let outcome: 'exit' | 'match' | 'timeout' | 'abort';
  try {
    outcome = await Promise.race([exit, matched, timeout, aborted]);
    // what it took to get here, before stopping (the background fill goes on meanwhile)
    r.counters = counters();
  } finally {
    clearTimeout(timer);
    clearInterval(firstRead);
    if (!exited) await stopChild(child, exit);
  }
  if (outcome !== 'exit') r.exit = null;
  if (outcome === 'match') return r;
  if (outcome === 'abort') throw new VmdnError('E_ABORTED', 'vmdn boot stopped by a signal: qemu and the server were stopped');
  if (outcome === 'timeout') {
    throw new VmdnError('E_TIMEOUT', o.until ? `the console did not match /${o.until.source}/ within ${o.timeoutMs! / 1000} s: qemu was stopped` : `the VM still ran after ${o.timeoutMs! / 1000} s: qemu was stopped`, { timeoutSeconds: o.timeoutMs! / 1000, msToFirstRead: r.msToFirstRead });
  }
  const how = r.exit!.signal ? `was killed by ${r.exit!.signal}` : `exited with status ${r.exit!.code}`;
  if (o.until) throw new VmdnError('E_IO', `qemu ${how} before the console matched /${o.until.source}/`, { qemuExit: r.exit });
  if (r.exit!.code !== 0) throw new VmdnError('E_IO', `qemu ${how}`, { qemuExit: r.exit });
  return r;
}

/** SIGTERM (qemu exits cleanly, restoring the terminal), SIGKILL if it is still there 10 s later. */
async function stopChild(child: ReturnType<typeof spawn>, exit: Promise<unknown>): Promise<void> {
  const done = exit.catch(() => undefined);
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = await Promise.race([done.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), QEMU_STOP_MS)))]);
  clearTimeout(timer);
  if (late) {
    child.kill('SIGKILL');
    await done;
  }
}
