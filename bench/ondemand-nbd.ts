/**
 * NBD reads for the on-demand section: `qemu-img convert` of a whole export
 * to a raw file, served by `vmdn nbd --from` (cached or cold) or by qemu-nbd
 * of the raw file; the server's peak RSS and, for vmdn, its last counters.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { cpuSecondsOf, run, timed, track, untrack } from './measure.js';
import { peakRssOf, VMDN } from './net-procs.js';
import type { NbdCounters, NbdRead } from './ondemand-report.js';

async function waitFor(child: ChildProcess, sock: string, what: string, err: () => string): Promise<void> {
  for (let i = 0; !fs.existsSync(sock); i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited ${child.exitCode}: ${err()}`);
    if (i > 600) throw new Error(`${what} did not listen within 60 s: ${err()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('close', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(t);
}

/** Serve with `start`, convert the whole export with qemu-img, compare with `raw`. */
async function convertFrom(child: ChildProcess, sock: string, what: string, o: { tmpDir: string; raw: string }): Promise<NbdRead & { stdout: string }> {
  let out = '';
  let err = '';
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  const file = path.join(o.tmpDir, 'nbd-out.raw');
  fs.rmSync(file, { force: true });
  track(child.pid!);
  try {
    await waitFor(child, sock, what, () => err);
    const cpu0 = cpuSecondsOf(child.pid!);
    const t = await timed('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `nbd+unix:///?socket=${sock}`, file], { tmpDir: o.tmpDir, timeoutMs: 20 * 60_000 });
    const peakRssBytes = peakRssOf(child.pid!);
    const serverCpuSeconds = cpuSecondsOf(child.pid!) - cpu0;
    await stop(child);
    const error = t.exitCode !== 0 ? `${what}: qemu-img convert exit ${t.exitCode}: ${t.stderrTail.trim().slice(-200)} ${err.trim().slice(-200)}` : undefined;
    const identical = error ? null : run('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'raw', o.raw, file]).code === 0;
    return { seconds: t.seconds, peakRssBytes, serverCpuSeconds, identical, ...(error ? { error } : {}), stdout: out };
  } finally {
    await stop(child);
    untrack(child.pid!);
    fs.rmSync(file, { force: true });
    fs.rmSync(sock, { force: true });
  }
}

/** `vmdn nbd IMAGE --from URL --cache DIR --readonly --json` read end to end; the fill runs unless the cache is complete. */
export async function nbdRead(o: { url: string; image: string; cache: string; tmpDir: string; raw: string }): Promise<NbdRead & { counters?: NbdCounters }> {
  const sock = path.join(o.tmpDir, 'vmdn-nbd.sock');
  fs.rmSync(sock, { force: true });
  const child = spawn(process.execPath, [VMDN, 'nbd', o.image, '--from', o.url, '--cache', o.cache, '--socket', sock, '--readonly', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { stdout, ...r } = await convertFrom(child, sock, 'vmdn nbd', o);
  const last = stdout.split('\n').filter((l) => l.startsWith('{"event":"counters"')).pop();
  return { ...r, ...(last ? { counters: JSON.parse(last) as NbdCounters } : {}) };
}

/** `qemu-nbd -r` of the raw file read end to end. */
export async function qemuNbdRead(o: { tmpDir: string; raw: string }): Promise<NbdRead> {
  const sock = path.join(o.tmpDir, 'qemu-nbd.sock');
  fs.rmSync(sock, { force: true });
  const child = spawn('qemu-nbd', ['-r', '-t', '-f', 'raw', '-k', sock, o.raw], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { stdout: _o, ...r } = await convertFrom(child, sock, 'qemu-nbd', o);
  return r;
}
