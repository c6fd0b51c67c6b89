/**
 * Benchmark section "formats" (issue 14): per container format, in one run,
 * vmdn import time against `casync make` of the raw image, vmdn export time
 * against `qemu-img convert -O FMT` from the corpus qcow2, peak RSS, store
 * growth when the same disk arrives in a second format, the SHA-256 and zstd
 * decode rates of this machine, and where the time of `vmdn export NAME x.raw`
 * goes. Everything runs with a warm page cache (each input is read once
 * before it is timed): the shared machine's cache cannot be dropped fairly
 * while other work runs, and warm is the floor both tools are held to.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { timed, run, GNU_TIME, type Timed } from './measure.js';
import { REPO } from './net-procs.js';
import { medianFigures, renderFormats, parseStraceSummary, type Breakdown, type FormatRow, type FormatsResult, type RunFigures } from './formats-report.js';
import { LocalStore } from '../src/store/local/local-store.js';
import { resolveImage } from '../src/images/names.js';
import { decodeObjectInto, frameContentSize } from '../src/store/codec.js';

const FORMATS = ['raw', 'qcow2', 'vmdk', 'vmdk-sparse', 'vhd', 'vhd-fixed', 'vhdx', 'vdi'] as const;
/** qemu-img's name and options for each vmdn output format (force_size keeps a VHD's exact size, not CHS-rounded) */
const QEMU: Record<(typeof FORMATS)[number], string[]> = {
  raw: ['-O', 'raw'],
  qcow2: ['-O', 'qcow2'],
  vmdk: ['-O', 'vmdk', '-o', 'subformat=streamOptimized'],
  'vmdk-sparse': ['-O', 'vmdk', '-o', 'subformat=monolithicSparse'],
  vhd: ['-O', 'vpc', '-o', 'subformat=dynamic,force_size=on'],
  'vhd-fixed': ['-O', 'vpc', '-o', 'subformat=fixed,force_size=on'],
  vhdx: ['-O', 'vhdx'],
  vdi: ['-O', 'vdi'],
};

const CLI = path.join(REPO, 'bin', 'vmdn.js');
const figures = (t: Timed): RunFigures => {
  const ok = t.exitCode === 0 && !t.timedOut;
  return { cmd: t.cmd.replace(process.execPath, 'node').replace(CLI, 'vmdn'), ok, seconds: t.seconds, maxRssBytes: t.maxRssBytes, ...(ok ? {} : { error: `exit ${t.exitCode}: ${(t.stdout + t.stderrTail).slice(-400)}` }) };
};
const warm = (file: string) => run('cat', [file]).code; // read once so the timed run finds it cached
const uptime = () => run('uptime', []).stdout.trim();

function storedBytes(store: string): number {
  const db = new Database(path.join(store, 'index.db'), { readonly: true });
  try {
    return (db.prepare('SELECT sum(stored_size) AS s FROM objects').get() as { s: number }).s;
  } finally {
    db.close();
  }
}

/** Stored bytes of the objects `store` holds that `base` lacks. */
function growth(store: string, base: string): number {
  const db = new Database(path.join(store, 'index.db'), { readonly: true });
  try {
    db.prepare('ATTACH DATABASE ? AS b').run(path.join(base, 'index.db'));
    return (db.prepare('SELECT coalesce(sum(stored_size), 0) AS s FROM objects WHERE digest NOT IN (SELECT digest FROM b.objects)').get() as { s: number }).s;
  } finally {
    db.close();
  }
}

function sha256Rate(): number {
  const buf = crypto.randomBytes(256 << 20);
  const t0 = process.hrtime.bigint();
  crypto.createHash('sha256').update(buf).digest();
  return buf.length / 1e6 / (Number(process.hrtime.bigint() - t0) / 1e9);
}

/** One core: read every distinct object of the image, then decode+verify, then hash the decoded data alone. */
export async function objectRates(store: string, image: string): Promise<FormatsResult['objects']> {
  const s = await LocalStore.open(store);
  try {
    const { manifest } = await resolveImage(s, { name: image, tag: 'latest' });
    const digests = [...new Set(manifest.chunks.map((c) => c[2]))];
    let t = process.hrtime.bigint();
    // through the store (a stretch of a pack, or a loose file of an older store)
    const encoded: Uint8Array[] = [];
    for (const d of digests) encoded.push(await s.getEncoded(d));
    const readSeconds = Number(process.hrtime.bigint() - t) / 1e9;
    t = process.hrtime.bigint();
    // into one reused buffer, as the export's workers decode (a fresh buffer per object costs its page faults)
    const sizes = digests.map((d, i) => frameContentSize(encoded[i]!));
    const out = Buffer.allocUnsafe(Math.max(0, ...sizes));
    digests.forEach((d, i) => decodeObjectInto(d, encoded[i]!, out.subarray(0, sizes[i]!)));
    const decodeVerifySeconds = Number(process.hrtime.bigint() - t) / 1e9;
    t = process.hrtime.bigint();
    for (const n of sizes) crypto.createHash('sha256').update(out.subarray(0, n)).digest();
    const hashSeconds = Number(process.hrtime.bigint() - t) / 1e9;
    const sum = (xs: Uint8Array[]) => xs.reduce((a, b) => a + b.length, 0);
    return { count: digests.length, storedBytes: sum(encoded), dataBytes: sizes.reduce((a, b) => a + b, 0), readSeconds, decodeVerifySeconds, hashSeconds };
  } finally {
    await s.close();
  }
}

/** `vmdn export IMAGE OUT.raw` three ways: GNU time (user, sys, faults), strace -c (syscalls), strace openat (object opens). */
export async function breakdown(store: string, image: string, work: string): Promise<Breakdown> {
  const out = path.join(work, 'breakdown.raw');
  const args = [CLI, 'export', image, out, '--store', store, '--no-progress'];
  const tf = path.join(work, 'breakdown.time');
  spawnSync(GNU_TIME, ['-f', '%e %M %U %S %F %w %c', '-o', tf, process.execPath, ...args], { stdio: 'ignore' });
  const [e, M, U, S, F, w, c] = fs.readFileSync(tf, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  const b: Breakdown = { cmd: `vmdn export ${image} ${image}.raw`, seconds: e!, maxRssBytes: M! * 1024, userSeconds: U!, sysSeconds: S!, majorFaults: F!, voluntarySwitches: w!, involuntarySwitches: c! };
  if (run('which', ['strace']).code === 0) {
    fs.rmSync(out, { force: true }); // export refuses to overwrite: each run starts from no file
    const sc = path.join(work, 'strace.c');
    spawnSync('strace', ['-f', '-c', '-o', sc, process.execPath, ...args], { stdio: 'ignore' });
    b.syscalls = parseStraceSummary(fs.readFileSync(sc, 'utf8'));
    fs.rmSync(out, { force: true });
    const so = path.join(work, 'strace.open');
    spawnSync('strace', ['-f', '-e', 'trace=openat', '-o', so, process.execPath, ...args], { stdio: 'ignore' });
    b.objectOpens = fs.readFileSync(so, 'utf8').split('\n').filter((l) => l.includes(`${store}/objects/`)).length;
  }
  fs.rmSync(out, { force: true });
  return b;
}

export async function benchFormats(opts: { corpusDir: string; workDir: string; image?: string; rounds?: number; log: (s: string) => void }): Promise<{ result: FormatsResult; markdown: string }> {
  const image = opts.image ?? 'base';
  const rounds = Math.max(1, Math.floor(opts.rounds ?? 3));
  const { workDir: work, log } = opts;
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  const startLoad = uptime();
  const corpusRaw = path.join(opts.corpusDir, `${image}.raw`);
  const corpusQcow2 = path.join(opts.corpusDir, `${image}.qcow2`);
  const t = (cmd: string, args: string[]) => timed(cmd, args, { tmpDir: work, timeoutMs: 20 * 60_000 });
  const vmdn = (args: string[]) => t(process.execPath, [CLI, ...args, '--no-progress', '--json']);
  try {
    warm(corpusRaw);
    log('casync make of the raw image (anchor)');
    const casyncMake = figures(await t('casync', ['make', `--store=${path.join(work, 'casync-store')}`, path.join(work, `${image}.caibx`), corpusRaw]));
    fs.rmSync(path.join(work, 'casync-store'), { recursive: true, force: true });

    const qStore = path.join(work, 'store-main'); // holds the image from its qcow2; exports read it
    warm(corpusQcow2);
    const first = await vmdn(['import', corpusQcow2, '--name', image, '--store', qStore]);
    if (first.exitCode !== 0) throw new Error(`vmdn import ${corpusQcow2} failed: ${first.stderrTail}`);
    const firstImportStoredBytes = storedBytes(qStore);

    const rows: FormatRow[] = [];
    for (const format of FORMATS) {
      log(`${format}: import, export, qemu-img convert`);
      let input = format === 'raw' ? corpusRaw : format === 'qcow2' ? corpusQcow2 : path.join(work, `in.${format}`);
      if (input.startsWith(work)) {
        const c = run('qemu-img', ['convert', '-f', 'qcow2', ...QEMU[format], corpusQcow2, input]);
        if (c.code !== 0) throw new Error(`qemu-img convert to ${format}: ${c.stderr}`);
      }
      warm(input);
      const fStore = path.join(work, `store-${format}`);
      const imp = format === 'qcow2' ? first : await vmdn(['import', input, '--name', image, '--store', fStore]);
      const growthBytes = format === 'qcow2' ? 0 : growth(fStore, qStore);
      if (input.startsWith(work)) fs.rmSync(input);
      if (format !== 'qcow2') fs.rmSync(fStore, { recursive: true, force: true });

      // export and qemu-img alternate for `rounds` rounds; each is shown by its median round
      const out = path.join(work, `out.${format}`);
      const exps: RunFigures[] = [];
      const qs: RunFigures[] = [];
      for (let i = 0; i < rounds; i++) {
        exps.push(figures(await vmdn(['export', image, out, '--format', format, '--store', qStore])));
        fs.rmSync(out, { force: true });
        qs.push(figures(await t('qemu-img', ['convert', '-f', 'qcow2', ...QEMU[format], corpusQcow2, out])));
        fs.rmSync(out, { force: true });
      }
      const exp = medianFigures(exps);
      const q = medianFigures(qs);
      rows.push({ format, import: figures(imp), growthBytes, export: exp, qemuConvert: q });
      log(`${format}: import ${imp.seconds} s, export ${exp.runs!.join('/')} s, qemu-img ${q.runs!.join('/')} s, growth ${growthBytes} B`);
    }

    log('SHA-256 and zstd rates, export breakdown');
    const sha256MBps = sha256Rate();
    const objects = await objectRates(qStore, image);
    const bd = await breakdown(qStore, image, work);
    const result: FormatsResult = {
      image,
      load: { start: startLoad, end: uptime() },
      pageCache: 'Page cache warm for every timed run (each input read once before).',
      casyncMake,
      firstImportStoredBytes,
      rows,
      sha256MBps,
      shaNi: /\bsha_ni\b/.test(fs.readFileSync('/proc/cpuinfo', 'utf8')),
      objects,
      breakdown: bd,
    };
    return { result, markdown: renderFormats(result) };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
