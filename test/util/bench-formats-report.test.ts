/** The formats benchmark's arithmetic: issue 14's per-format targets, and the strace summary parser. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatTargets, medianFigures, parseStraceSummary, renderFormats, type FormatRow, type FormatsResult } from '../../bench/formats-report.js';

const run = (seconds: number, rss = 100e6, ok = true) => ({ cmd: 'x', ok, seconds, maxRssBytes: rss });
const row = (format: string, imp: number, exp: number, qemu: number, growthBytes = 0, rss = 100e6): FormatRow => ({ format, import: run(imp, rss), growthBytes, export: run(exp, rss), qemuConvert: run(qemu) });

describe('bench formats targets', () => {
  it('ratios and thresholds: casync/import >= 1, export/qemu <= 1.5, growth <= 1 %, RSS < 300 MB', () => {
    const t = formatTargets({
      casyncMake: run(10),
      firstImportStoredBytes: 1000,
      rows: [row('ok', 10, 3, 2, 10), row('slow-import', 12.5, 1, 1), row('slow-export', 5, 4, 2), row('grows', 5, 1, 1, 11), row('fat', 5, 1, 1, 0, 300e6)],
    });
    assert.deepEqual(t.map((x) => [x.format, x.met]), [['ok', true], ['slow-import', false], ['slow-export', false], ['grows', false], ['fat', false]]);
    assert.equal(t[0]!.importRatio, 1);
    assert.equal(t[0]!.exportRatio, 1.5);
    assert.equal(t[0]!.growthPercent, 1);
    assert.equal(t[1]!.importRatio, 0.8);
    assert.equal(t[3]!.growthPercent, 1.1);
  });

  it('a failed run is never met, whatever its time', () => {
    const r = row('raw', 1, 1, 1);
    r.export.ok = false;
    assert.equal(formatTargets({ casyncMake: run(10), firstImportStoredBytes: 1000, rows: [r] })[0]!.met, false);
  });

  it('renders a row per format and the floor line', () => {
    const res: FormatsResult = {
      image: 'base', load: { start: 'a', end: 'b' }, pageCache: 'warm', casyncMake: run(10), firstImportStoredBytes: 1e8,
      rows: [row('raw', 5, 3, 1), row('vdi', 5, 3, 2)], sha256MBps: 1500, shaNi: true,
      objects: { count: 3, storedBytes: 1e6, dataBytes: 3e6, readSeconds: 0.2, decodeVerifySeconds: 0.6, hashSeconds: 0.3 },
      breakdown: { cmd: 'vmdn export base base.raw', seconds: 3, userSeconds: 2, sysSeconds: 1, maxRssBytes: 1e8, majorFaults: 0, voluntarySwitches: 1, involuntarySwitches: 2, objectOpens: 3 },
    };
    const md = renderFormats(res);
    assert.match(md, /^\| raw \| 5\.00 \| 2\.00 \|/m);
    assert.match(md, /\| vdi \|.*\| 1\.50 \|/);
    // the per-object reads through the store (0.2 s) are not part of the floor
    assert.match(md, /Floor on 2 cores, warm: decode \+ verify \/ 2 = 0\.30 s plus writing the output \(qemu-img's raw convert: 1\.00 s\) and starting node; measured 3\.00 s/);
  });

  it('repeated rounds: the median round, a failed round sorted last, every round listed under the table', () => {
    const m = medianFigures([run(2.5), run(1.9), run(2.1)]);
    assert.equal(m.seconds, 2.1);
    assert.deepEqual(m.runs, [2.5, 1.9, 2.1]);
    assert.equal(medianFigures([run(0.1, 1, false), run(3), run(4)]).seconds, 4, 'a quick failure is not the median');
    assert.throws(() => medianFigures([]), /no rounds/);
    const r = row('raw', 5, 3, 1);
    r.export = medianFigures([run(3.3), run(2.9), run(3.1)]);
    r.qemuConvert = medianFigures([run(1.2), run(1.0), run(1.1)]);
    const res: FormatsResult = {
      image: 'base', load: { start: 'a', end: 'b' }, pageCache: 'warm', casyncMake: run(10), firstImportStoredBytes: 1e8, rows: [r], sha256MBps: 1500, shaNi: true,
      objects: { count: 3, storedBytes: 1e6, dataBytes: 3e6, readSeconds: 0.2, decodeVerifySeconds: 0.6, hashSeconds: 0.3 },
    };
    const md = renderFormats(res);
    assert.match(md, /alternate for 3 rounds/);
    assert.match(md, /raw 3\.30, 2\.90, 3\.10 \/ 1\.20, 1\.00, 1\.10/);
    assert.equal(formatTargets(res)[0]!.exportRatio, 3.1 / 1.1);
  });

  it('parses strace -c -f output, with and without an errors column, top by seconds', () => {
    const text = [
      '% time     seconds  usecs/call     calls    errors syscall',
      '------ ----------- ----------- --------- --------- ----------------',
      ' 40.00    0.400000          27     14675           openat',
      ' 35.00    0.350000          11     30000        12 futex',
      ' 25.00    0.250000           5     50000           pwrite64',
      '------ ----------- ----------- --------- --------- ----------------',
      '100.00    1.000000          10     94675        12 total',
    ].join('\n');
    assert.deepEqual(parseStraceSummary(text, 2), [{ name: 'openat', calls: 14675, seconds: 0.4 }, { name: 'futex', calls: 30000, seconds: 0.35 }]);
  });
});
