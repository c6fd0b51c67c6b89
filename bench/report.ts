/** Renders bench results as the Markdown report (bench/results/latest.md). */
import type { BenchResults, Step } from './types.js';

const MB = 1e6;
const fin = (x: number | undefined | null): x is number => typeof x === 'number' && Number.isFinite(x);
const n1 = (x: number | undefined | null) => (fin(x) ? x.toFixed(1) : 'n/a');
const n2 = (x: number | undefined | null) => (fin(x) ? x.toFixed(2) : 'n/a');
const mbs = (b: number | undefined | null, digits = 1) => (fin(b) ? (b / MB).toFixed(digits) : 'n/a');
const rss = (s: Step | undefined) => (s && fin(s.maxRssBytes) ? (s.maxRssBytes / MB).toFixed(0) : 'n/a');
const secs = (s: Step | undefined) => (!s ? 'n/a' : s.ok ? n1(s.seconds) : `failed (${n1(s.seconds)})`);
const metText = (m: boolean | null) => (m === null ? 'not measured' : m ? '**met**' : '**not met**');

function table(head: string[], rows: (string | number)[][], align?: string): string {
  const a = align ?? head.map((_, i) => (i === 0 ? ':--' : '--:')).join('|');
  const sep = `|${a}|`;
  return [`| ${head.join(' | ')} |`, sep, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function renderMarkdown(r: BenchResults): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(`# vmdn benchmark`);
  out.push('');
  out.push(
    `Run ${r.startedAt} → ${r.finishedAt} (${(r.durationSeconds / 60).toFixed(1)} min), vmdn ${m.vmdn.version} at ${m.vmdn.commit}` +
      (m.vmdn.dirtyFiles.length ? ` plus uncommitted changes in ${m.vmdn.dirtyFiles.length} file(s) (${m.vmdn.dirtyFiles.join(', ')})` : '') +
      '. Every figure below was measured in this run; only the casync reference column is quoted from the project.',
  );
  out.push('');
  out.push(table(['machine', ''], [
    ['CPU', `${m.cpuModel}, ${m.cores} cores`],
    ['memory', `${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB`],
    ['kernel', m.kernel],
    ['node', m.node],
    ...Object.entries(m.tools).map(([k, v]) => [k, v || 'n/a']),
    ['load at start', r.load.start.loadavg.join(', ') + ` (${r.load.start.uptime})`],
    ['load at end', r.load.end.loadavg.join(', ') + ` (${r.load.end.uptime})`],
    ['page cache', r.settings.cachesDropped ? 'dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every timed step' : 'NOT dropped between steps'],
    ['corpus', `${r.settings.corpusDir} (${r.settings.images.join(', ')})`],
    ['default chunker', r.settings.defaultChunker],
  ], ':--|:--'));
  out.push('');
  out.push('MB = 10^6 bytes. Times are wall seconds and peak RSS is the maximum resident set size, both from GNU time (`/usr/bin/time -f "%e %M"`). ' +
    'casync runs with Debian\'s default settings and reads NAME.raw; vmdn imports NAME.raw into one store (same input as casync) and NAME.qcow2 into another (the main store, used for everything else).');
  out.push('');

  // targets first: the verdict
  out.push('## Targets');
  out.push('');
  out.push(table(['target', 'measured', 'threshold', 'verdict'], r.targets.map((t) => [t.target, t.measured, t.threshold, metText(t.met)]), ':--|:--|:--|:--'));
  out.push('');

  out.push('## Import');
  out.push('');
  out.push(table(
    ['image', 'allocated MB', 'casync make s', 'vmdn raw s', 'vmdn qcow2 s', 'casync/vmdn (raw)', 'casync/vmdn (qcow2)', 'RSS MB casync / vmdn raw / vmdn qcow2'],
    r.images.map((i) => [
      i.name,
      mbs(i.vmdnImportRaw.stats?.allocated ?? i.vmdnImportQcow2.stats?.allocated, 0),
      secs(i.casyncMake),
      secs(i.vmdnImportRaw),
      secs(i.vmdnImportQcow2),
      n2(i.importRatioRaw),
      n2(i.importRatioQcow2),
      `${rss(i.casyncMake)} / ${rss(i.vmdnImportRaw)} / ${rss(i.vmdnImportQcow2)}`,
    ]),
  ));
  out.push('');
  out.push('Throughput, MB/s of the virtual size (3 GiB) and of the allocated data (vmdn\'s `stats.allocated` of the file read; casync uses the raw file\'s):');
  out.push('');
  out.push(table(
    ['image', 'casync virtual', 'casync allocated', 'vmdn raw virtual', 'vmdn raw allocated', 'vmdn qcow2 virtual', 'vmdn qcow2 allocated', 'store after: casync MB', 'vmdn raw MB', 'vmdn qcow2 MB'],
    r.images.map((i) => [
      i.name,
      n1(i.casyncMake.throughput.virtualMBps),
      n1(i.casyncMake.throughput.allocatedMBps),
      n1(i.vmdnImportRaw.throughput.virtualMBps),
      n1(i.vmdnImportRaw.throughput.allocatedMBps),
      n1(i.vmdnImportQcow2.throughput.virtualMBps),
      n1(i.vmdnImportQcow2.throughput.allocatedMBps),
      mbs(i.casyncMake.storeBytesAfter),
      mbs(i.vmdnImportRaw.storeBytesAfter),
      mbs(i.vmdnImportQcow2.storeBytesAfter),
    ]),
  ));
  out.push('');
  out.push('Store sizes after each import are on-disk file bytes: casync chunk files; vmdn object files plus index.db.');
  out.push('');

  out.push('## Export');
  out.push('');
  out.push(table(
    ['image', 'vmdn export s', 'casync extract s', 'qemu-img convert s', 'vmdn/qemu-img', 'vmdn/casync', 'sync after s: vmdn / casync / qemu-img', 'vmdn/qemu-img incl. sync', 'RSS MB vmdn / casync / qemu-img', 'bit-identical'],
    r.images.filter((i) => i.export).map((i) => {
      const e = i.export!;
      return [i.name, secs(e.vmdn), secs(e.casync), secs(e.qemuImg), n2(e.ratioQemuImg), n2(e.ratioCasync),
        `${n2(e.vmdn.syncSeconds)} / ${n2(e.casync.syncSeconds)} / ${n2(e.qemuImg.syncSeconds)}`, n2(e.ratioQemuImgDurable),
        `${rss(e.vmdn)} / ${rss(e.casync)} / ${rss(e.qemuImg)}`, e.identical === null ? `? (${e.compare})` : e.identical ? 'yes' : `**NO** (${e.compare})`];
    }),
  ));
  out.push('');
  out.push('All three write a sparse 3 GiB raw file: vmdn from its main store, casync from its store and .caibx, qemu-img from the corpus qcow2. ' +
    'vmdn fsyncs its output before renaming it into place; "sync after" is how long a `sync` run right after each command took, i.e. the writing a tool left behind in the page cache, and "incl. sync" compares the times until the data is on disk. ' +
    '"bit-identical": `qemu-img compare -f raw -F qcow2 OUT.raw NAME.qcow2` on vmdn\'s output.');
  out.push('');

  const s = r.stores;
  if (s) {
    out.push('## Store size, all images');
    out.push('');
    out.push(table(['', 'vmdn (qcow2 imports)', 'vmdn (raw imports)', 'casync'], [
      ['objects / chunk files', String(s.vmdn.objects), s.vmdnRaw ? String(s.vmdnRaw.objects) : 'n/a', String(s.casync.chunkFiles)],
      ['compressed data MB (vmdn `stats.storedBytes`; casync chunk files)', mbs(s.vmdn.storedBytes), mbs(s.vmdnRaw?.storedBytes), mbs(s.casync.chunkBytes)],
      ['index MB (vmdn index.db; casync .caibx files)', mbs(s.vmdn.disk.indexBytes), mbs(s.vmdnRaw?.disk.indexBytes), mbs(s.casync.indexBytes)],
      ['total file bytes MB', mbs(s.vmdn.disk.total), mbs(s.vmdnRaw?.disk.total), mbs(s.casync.total)],
      ['allocated on disk MB (du)', mbs(s.vmdn.disk.diskBytes), mbs(s.vmdnRaw?.disk.diskBytes), mbs(s.casync.diskBytes)],
      ['uncompressed distinct data MB', mbs(s.vmdn.objectBytes), 'n/a', 'n/a'],
      ['non-zero data of all images MB', mbs(s.vmdn.logicalBytes), 'n/a', 'n/a'],
      ['compression', 'zstd', 'zstd', s.casync.compression],
    ], ':--|--:|--:|--:'));
    out.push('');
  }

  if (r.delivery.length) {
    out.push('## Delivery cases: what a target must fetch');
    out.push('');
    out.push(table(
      ['target', 'held', 'vmdn chunks MB', 'vmdn manifest KB', 'vmdn total MB', 'casync chunks MB', 'casync .caibx KB', 'casync total MB', 'casync reference MB', 'vmdn/casync', 'full image: vmdn / casync MB'],
      r.delivery.map((d) => [
        d.target,
        d.held.join(' + '),
        mbs(d.vmdn?.chunkBytes),
        d.vmdn ? (d.vmdn.manifestBytes / 1e3).toFixed(1) : 'n/a',
        mbs(d.vmdn?.total),
        mbs(d.casync?.chunkBytes),
        d.casync ? (d.casync.indexBytes / 1e3).toFixed(1) : 'n/a',
        mbs(d.casync?.total),
        fin(d.referenceCasyncMB) ? String(d.referenceCasyncMB) : 'n/a',
        d.vmdn && d.casync ? n2(d.vmdn.total / d.casync.total) : 'n/a',
        `${mbs(d.vmdn?.fullBytes)} / ${mbs(d.casync ? d.casync.fullChunkBytes + d.casync.indexBytes : undefined)}`,
      ]),
    ));
    out.push('');
    out.push('Bytes are compressed (as stored) of the distinct chunks the target references and none of the held images does, plus the target\'s manifest (vmdn) or index file (casync). ' +
      'The project\'s reference figures are casync chunk bytes without the index; compare them with the "casync chunks" column. ' +
      'vmdn counts from index.db (`manifest_refs`, `objects.stored_size`); casync from the parsed .caibx files and the sizes of the .cacnk files. ' +
      'Every .caibx was checked: its last chunk ends at the image size and every chunk id has a file in the store' +
      (r.images.every((i) => i.caibx && i.caibx.sizeMatches && i.caibx.missingChunks === 0) ? ' (all passed).' : ' (see problems).'));
    out.push('');
  }

  if (r.chunkers.length) {
    out.push('## Chunker comparison (all qcow2 imports into a fresh store per spec)');
    out.push('');
    const cases = [...new Set([...r.delivery.map((d) => d.target), ...r.chunkers.flatMap((c) => (c.delivery ?? []).map((d) => d.target))])];
    out.push(table(
      ['chunker', 'status', 'import s (sum)', 'peak RSS MB', 'objects', 'stored MB', 'on disk MB', ...cases.map((c) => `${c} MB`), 'delivery sum MB'],
      r.chunkers.map((c) => [
        c.isDefault ? `**${c.spec}** (default)` : c.spec,
        c.status + (c.reason ? `: ${c.reason}` : ''),
        n1(c.importSeconds),
        fin(c.maxRssBytes) ? (c.maxRssBytes / MB).toFixed(0) : 'n/a',
        c.objects ?? 'n/a',
        mbs(c.storedBytes),
        mbs(c.diskTotal),
        ...cases.map((t) => mbs(c.delivery?.find((d) => d.target === t)?.total)),
        mbs(c.deliveryTotal),
      ]),
    ));
    out.push('');
    const ok = r.chunkers.filter((c) => c.status === 'ok' && fin(c.deliveryTotal) && fin(c.diskTotal));
    if (ok.length > 1) {
      const bestD = ok.reduce((a, b) => (b.deliveryTotal! < a.deliveryTotal! ? b : a));
      const bestS = ok.reduce((a, b) => (b.diskTotal! < a.diskTotal! ? b : a));
      const fastest = ok.reduce((a, b) => (b.importSeconds! < a.importSeconds! ? b : a));
      out.push(`Smallest delivery sum: ${bestD.spec}; smallest store on disk: ${bestS.spec}; fastest import: ${fastest.spec}. ` +
        'Import times of the specs were taken at different moments of the run and share the machine with whatever else ran; compare them loosely.');
      out.push('');
    }
  }

  out.push('## Notes');
  out.push('');
  out.push(`- Load average (1/5/15 min) at start ${r.load.start.loadavg.join(' / ')}, at end ${r.load.end.loadavg.join(' / ')} on ${m.cores} cores; other work on the machine inflates times.`);
  out.push(`- Peak RSS over every vmdn command run: ${fin(r.maxVmdnRssBytes) && r.maxVmdnRssBytes ? `${(r.maxVmdnRssBytes / MB).toFixed(0)} MB, by \`${r.maxVmdnRssCommand}\`` : 'n/a'}.`);
  out.push('- vmdn ran from a private copy of the build (dist/src, bin) taken at the start, so rebuilds of dist/ during the run do not affect it.');
  out.push(`- Settings: BENCH_IMAGES=${r.settings.images.join(',')} BENCH_CHUNKERS=${r.settings.chunkers.join(',')} BENCH_BUDGET_MIN=${r.settings.budgetMinutes}; work dir ${r.settings.workDir}.`);
  if (r.problems.length) {
    out.push('');
    out.push('### Problems');
    out.push('');
    for (const p of r.problems) out.push(`- ${p.replace(/\n/g, ' ')}`);
  }
  out.push('');
  return out.join('\n');
}

/**
 * The report with `section` in place of the one under the same "## " heading
 * (up to the next "## "), or appended: a rerun of one section replaces it.
 */
export function replaceSection(md: string, section: string): string {
  const heading = section.split('\n', 1)[0]!;
  const lines = md.trimEnd().split('\n');
  const at = heading.startsWith('## ') ? lines.indexOf(heading) : -1;
  if (at < 0) return `${md.trimEnd()}\n\n${section}\n`;
  let end = at + 1;
  while (end < lines.length && !lines[end]!.startsWith('## ')) end++;
  return [...lines.slice(0, at), ...section.split('\n'), ...(end < lines.length ? ['', ...lines.slice(end)] : [])].join('\n') + '\n';
}
