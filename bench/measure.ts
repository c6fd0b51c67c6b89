/**
 * Measurement helpers for the benchmark: run a command under GNU time for wall
 * time and peak RSS, drop the page cache, sum file sizes, describe the machine.
 */
import { spawn, spawnSync } from 'node:child_process';
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const GNU_TIME = '/usr/bin/time';

export interface Timed {
  /** the command line, for the record */
  cmd: string;
  /** wall seconds as GNU time reports them (%e) */
  seconds: number;
  /** peak resident set size of the command, bytes (%M is KiB) */
  maxRssBytes: number;
  /** user + system CPU seconds of the command and its children (%U + %S) */
  cpuSeconds: number;
  exitCode: number;
  stdout: string;
  /** last 8 KiB of stderr */
  stderrTail: string;
  timedOut: boolean;
}

let timeFileSeq = 0;

/**
 * Children still running, to end on SIGINT: process groups as negative pids
 * (timed() runs each command in its own group, so a Ctrl-C on the terminal
 * does not reach it), single processes as positive ones.
 */
const running = new Set<number>();
export const track = (pid: number) => running.add(pid);
export const untrack = (pid: number) => running.delete(pid);
/** SIGKILL every tracked child (a benchmark interrupted must not leave them behind). */
export function killTracked(): void {
  for (const pid of running) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  running.clear();
}

/**
 * Runs `cmd args` under `/usr/bin/time -f '%e %M %U %S' -o FILE`. The time line goes
 * to its own file so the command's stderr cannot be mistaken for it. The
 * command runs in its own process group so a timeout can stop it and its
 * children together.
 */
export async function timed(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number; tmpDir: string }): Promise<Timed> {
  const timeFile = path.join(opts.tmpDir, `time.${process.pid}.${++timeFileSeq}`);
  const child = spawn(GNU_TIME, ['-f', '%e %M %U %S', '-o', timeFile, cmd, ...args], {
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  if (child.pid) track(-child.pid);
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => {
    err = (err + b.toString('utf8')).slice(-8192);
  });
  let timedOut = false;
  const timer = opts.timeoutMs
    ? setTimeout(() => {
        timedOut = true;
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }, opts.timeoutMs)
    : undefined;
  const exitCode: number = await new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
  if (timer) clearTimeout(timer);
  if (child.pid) untrack(-child.pid);
  let seconds = NaN;
  let maxRssBytes = NaN;
  let cpuSeconds = NaN;
  try {
    const lines = readFileSync(timeFile, 'utf8').trim().split('\n');
    const m = /^([\d.]+) (\d+) ([\d.]+) ([\d.]+)$/.exec(lines[lines.length - 1]!.trim());
    if (m) {
      seconds = Number(m[1]);
      maxRssBytes = Number(m[2]) * 1024;
      cpuSeconds = Number(m[3]) + Number(m[4]);
    }
    await fsp.rm(timeFile, { force: true });
  } catch {
    /* killed before time wrote its line */
  }
  return { cmd: [cmd, ...args].join(' '), seconds, maxRssBytes, cpuSeconds, exitCode, stdout: Buffer.concat(out).toString('utf8'), stderrTail: err, timedOut };
}

/** Runs a command untimed, returning its output (no shell). */
export function run(cmd: string, args: string[], opts: { cwd?: string } = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? (r.error ? String(r.error) : '') };
}

/** sync, then drop the page cache, dentries and inodes; false when not permitted. */
export function dropCaches(): boolean {
  try {
    spawnSync('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

export interface DirSize {
  /** sum of the apparent sizes of regular files (du -sb without directories) */
  fileBytes: number;
  /** allocated blocks of files and directories (du -s) */
  diskBytes: number;
  files: number;
}

/** Walks a directory tree; a missing directory counts as empty. */
export async function dirSize(dir: string): Promise<DirSize> {
  const res: DirSize = { fileBytes: 0, diskBytes: 0, files: 0 };
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop()!;
    let entries;
    try {
      entries = await fsp.readdir(d, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    const st = await fsp.lstat(d);
    res.diskBytes += st.blocks * 512;
    const files = entries.filter((e) => e.isFile()).map((e) => path.join(d, e.name));
    for (const e of entries) if (e.isDirectory()) stack.push(path.join(d, e.name));
    for (let i = 0; i < files.length; i += 256) {
      const stats = await Promise.all(files.slice(i, i + 256).map((f) => fsp.lstat(f)));
      for (const s of stats) {
        res.fileBytes += s.size;
        res.diskBytes += s.blocks * 512;
        res.files++;
      }
    }
  }
  return res;
}

/** Size of a file, 0 if it does not exist. */
export async function fileSize(file: string): Promise<number> {
  try {
    return (await fsp.stat(file)).size;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) a live process has used so far, from /proc/PID/stat; NaN once it is gone. */
export function cpuSecondsOf(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the parenthesised command name; utime and stime are the 14th and 15th fields
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch {
    return NaN;
  }
}

export interface LoadSample {
  at: string;
  uptime: string;
  loadavg: number[];
}

export function sampleLoad(): LoadSample {
  return { at: new Date().toISOString(), uptime: run('uptime', []).stdout.trim(), loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100) };
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  node: string;
  tools: Record<string, string>;
  vmdn: { version: string; commit: string; dirtyFiles: string[] };
}

const firstLine = (s: string) => s.trim().split('\n')[0]?.trim() ?? '';

export function machineInfo(repoRoot: string): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1]!.trim();
  } catch {
    /* not Linux */
  }
  const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const git = (args: string[]) => run('git', args, { cwd: repoRoot });
  return {
    cpuModel,
    cores: os.availableParallelism(),
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    tools: {
      casync: firstLine(run('casync', ['--version']).stdout),
      'qemu-img': firstLine(run('qemu-img', ['--version']).stdout),
      // Debian's GNU time reports its version as UNKNOWN; the package version says more
      'GNU time': firstLine(run('dpkg-query', ['-W', '-f', '${Version}', 'time']).stdout) || firstLine(run(GNU_TIME, ['--version']).stdout),
      'casync (Debian package)': firstLine(run('dpkg-query', ['-W', '-f', '${Version}', 'casync']).stdout),
      'qemu-utils (Debian package)': firstLine(run('dpkg-query', ['-W', '-f', '${Version}', 'qemu-utils']).stdout),
    },
    vmdn: {
      version: pkg.version,
      commit: git(['rev-parse', '--short', 'HEAD']).stdout.trim(),
      // uncommitted work in the tree the bench built (others commit concurrently)
      dirtyFiles: git(['status', '--porcelain', '--', 'src', 'bin', 'native']).stdout.split('\n').filter(Boolean).map((l) => l.trim()),
    },
  };
}

export const MB = 1e6;
export const mb = (bytes: number) => bytes / MB;
