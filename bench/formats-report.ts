/**
 * The "formats" section's arithmetic and Markdown (pure: unit-tested in
 * test/util/bench-formats-report.test.ts): issue 14's targets per format from
 * the measured seconds, RSS and store growth.
 */

export interface RunFigures {
  cmd: string;
  ok: boolean;
  seconds: number;
  maxRssBytes: number;
  error?: string;
  /** Every round's seconds, in the order run, when the command was repeated (the figures are the median round's). */
  runs?: number[];
}

/** The median round (lower middle of an even count; a failed round sorts last), with every round's seconds. */
export function medianFigures(rounds: RunFigures[]): RunFigures {
  if (!rounds.length) throw new Error('medianFigures: no rounds');
  const sorted = [...rounds].sort((a, b) => (a.ok ? a.seconds : Infinity) - (b.ok ? b.seconds : Infinity));
  return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, runs: rounds.map((r) => r.seconds) };
}

export interface FormatRow {
  format: string;
  /** vmdn import of the disk in this format into an empty store */
  import: RunFigures;
  /** stored bytes of the objects that import made that the qcow2-first store lacks */
  growthBytes: number;
  export: RunFigures;
  qemuConvert: RunFigures;
}

export interface Breakdown {
  cmd: string;
  seconds: number;
  userSeconds: number;
  sysSeconds: number;
  maxRssBytes: number;
  majorFaults: number;
  voluntarySwitches: number;
  involuntarySwitches: number;
  /** object files opened (strace openat under objects/) */
  objectOpens?: number;
  /** top syscalls by time: name, calls, seconds (strace -c -f) */
  syscalls?: { name: string; calls: number; seconds: number }[];
}

export interface FormatsResult {
  image: string;
  load: { start: string; end: string };
  pageCache: string;
  casyncMake: RunFigures;
  /** stored bytes of the first (qcow2) import: the base of the growth percentages */
  firstImportStoredBytes: number;
  rows: FormatRow[];
  sha256MBps: number;
  shaNi: boolean;
  /** distinct objects of the image: their stored and decoded bytes, and one core's seconds to decode+verify them */
  objects: { count: number; storedBytes: number; dataBytes: number; decodeVerifySeconds: number; hashSeconds: number; readSeconds: number };
  breakdown?: Breakdown;
}

export interface FormatTarget {
  format: string;
  importRatio: number;
  exportRatio: number;
  growthPercent: number;
  rssOk: boolean;
  met: boolean;
}

/** casync make / vmdn import (>= 1.0), vmdn export / qemu-img convert (<= 1.5), growth (<= 1 %), peak RSS (< 300 MB). */
export function formatTargets(r: Pick<FormatsResult, 'casyncMake' | 'firstImportStoredBytes' | 'rows'>): FormatTarget[] {
  return r.rows.map((row) => {
    const importRatio = r.casyncMake.seconds / row.import.seconds;
    const exportRatio = row.export.seconds / row.qemuConvert.seconds;
    const growthPercent = (100 * row.growthBytes) / r.firstImportStoredBytes;
    const rssOk = row.import.maxRssBytes < 300e6 && row.export.maxRssBytes < 300e6;
    const ok = row.import.ok && row.export.ok && row.qemuConvert.ok;
    return { format: row.format, importRatio, exportRatio, growthPercent, rssOk, met: ok && importRatio >= 1 && exportRatio <= 1.5 && growthPercent <= 1 && rssOk };
  });
}

const f = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
/** How the export timings were repeated, when they were. */
const rounds = (r: FormatsResult) => {
  const n = r.rows[0]?.export.runs?.length ?? 1;
  return n > 1 ? `; the two alternate for ${n} rounds and each cell is the median round (every round under the table)` : '';
};
const MiB = (b: number) => f(b / 2 ** 20, 0);

export function renderFormats(r: FormatsResult): string {
  const t = formatTargets(r);
  const o = r.objects;
  const out = [
    `## Formats: import and export per container format (${r.image})`,
    '',
    `One run of the section. Load: ${r.load.start} at start, ${r.load.end} at end (shared machine: figures are noisy). ${r.pageCache}`,
    `Import: \`vmdn import\` of ${r.image} in each format into an empty store, against \`casync make\` of ${r.image}.raw (${f(r.casyncMake.seconds)} s); the qcow2/raw inputs are the corpus files, the others made by \`qemu-img convert\` beforehand (untimed).`,
    `Export: \`vmdn export\` from a store holding ${r.image}.qcow2, against \`qemu-img convert -O FMT\` from the corpus qcow2${rounds(r)}. Growth: stored bytes the format's store holds that the qcow2 store lacks, over the qcow2 import's ${f(r.firstImportStoredBytes / 1e6, 1)} MB.`,
    '',
    '| format | import s | casync/import (>= 1.0) | import RSS MiB | growth (<= 1 %) | export s | qemu-img s | export/qemu (<= 1.5) | export RSS MiB | all met |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ...r.rows.map((row, i) => {
      const x = t[i]!;
      const bad = (s: RunFigures) => (s.ok ? '' : ' (FAILED)');
      return `| ${row.format} | ${f(row.import.seconds)}${bad(row.import)} | ${f(x.importRatio)} | ${MiB(row.import.maxRssBytes)} | ${f(x.growthPercent, 3)} % | ${f(row.export.seconds)}${bad(row.export)} | ${f(row.qemuConvert.seconds)}${bad(row.qemuConvert)} | ${f(x.exportRatio)} | ${MiB(row.export.maxRssBytes)} | ${x.met ? 'yes' : 'no'} |`;
    }),
    ...(r.rows.some((row) => (row.export.runs?.length ?? 1) > 1)
      ? ['', `Rounds, export / qemu-img seconds: ${r.rows.map((row) => `${row.format} ${(row.export.runs ?? [row.export.seconds]).map((x) => f(x)).join(', ')} / ${(row.qemuConvert.runs ?? [row.qemuConvert.seconds]).map((x) => f(x)).join(', ')}`).join('; ')}.`]
      : []),
    '',
    `SHA-256 (node crypto, one core, 256 MiB buffer): **${f(r.sha256MBps, 0)} MB/s**; CPU ${r.shaNi ? 'has' : 'lacks'} SHA extensions (sha_ni).`,
    `The image's ${o.count} distinct objects: ${f(o.storedBytes / 1e6, 0)} MB stored, ${f(o.dataBytes / 1e6, 0)} MB decoded. One core, warm cache: reading them through the store one at a time ${f(o.readSeconds)} s, zstd decode + SHA-256 verify into one reused buffer (as the export's workers do) ${f(o.decodeVerifySeconds)} s (of which SHA-256 ${f(o.hashSeconds)} s).`,
  ];
  const b = r.breakdown;
  if (b) {
    out.push(
      '',
      `Breakdown of \`${b.cmd}\` (warm): ${f(b.seconds)} s wall, user ${f(b.userSeconds)} s, sys ${f(b.sysSeconds)} s, peak RSS ${MiB(b.maxRssBytes)} MiB, ${b.majorFaults} major faults, ${b.voluntarySwitches} voluntary / ${b.involuntarySwitches} involuntary context switches` +
        (b.objectOpens !== undefined ? `, ${b.objectOpens} object files opened.` : '.'),
    );
    if (b.syscalls?.length) {
      out.push('', '| syscall (strace -c -f, separate run) | calls | seconds |', '|---|---:|---:|', ...b.syscalls.map((s) => `| ${s.name} | ${s.calls} | ${f(s.seconds, 3)} |`));
    }
    // the reads above are one await per object through the store (a whole export reads stretches of packs in its workers): not part of the floor
    const floor = Math.max(o.decodeVerifySeconds, 0) / 2;
    out.push('', `Floor on 2 cores, warm: decode + verify / 2 = ${f(floor)} s plus writing the output (qemu-img's raw convert: ${f(r.rows.find((x) => x.format === 'raw')?.qemuConvert.seconds ?? NaN)} s) and starting node; measured ${f(b.seconds)} s. \`node dist/bench/export-floor.js STORE ${r.image}\` measures the copy itself on 2 threads.`);
  }
  return out.join('\n') + '\n';
}

/** Parses `strace -c -f` output: the rows of its table, top `n` by seconds. */
export function parseStraceSummary(text: string, n = 8): { name: string; calls: number; seconds: number }[] {
  const rows: { name: string; calls: number; seconds: number }[] = [];
  for (const line of text.split('\n')) {
    // % time     seconds  usecs/call     calls    errors syscall
    const m = /^\s*[\d.]+\s+([\d.]+)\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/.exec(line);
    if (m && m[3] !== 'total') rows.push({ name: m[3]!, calls: Number(m[2]), seconds: Number(m[1]) });
  }
  return rows.sort((a, b) => b.seconds - a.seconds).slice(0, n);
}
