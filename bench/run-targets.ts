/** The targets of `npm run bench` (run.ts): each goal, what the run measured against it, and whether it is met. */
import type { BenchResults, Target } from './types.js';

export function targets(res: BenchResults): Target[] {
  const t: Target[] = [];
  const imgs = res.images;
  const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
  const perImage = (label: string, vals: number[], ok: (x: number) => boolean, threshold: string, total: number) => {
    const good = vals.filter((x) => Number.isFinite(x) && ok(x)).length;
    const finite = vals.filter(Number.isFinite);
    t.push({
      target: label,
      measured: finite.length ? `${good}/${vals.length} images; min ${f2(Math.min(...finite))}, max ${f2(Math.max(...finite))}, all images ${f2(total)}` : 'not measured',
      threshold,
      met: finite.length === vals.length && vals.length > 0 ? good === vals.length : null,
    });
  };
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  perImage('import speed, raw input: casync make time / vmdn import time', imgs.map((r) => r.importRatioRaw), (x) => x >= 1, '>= 1.0 per image',
    sum(imgs.map((r) => r.casyncMake.seconds)) / sum(imgs.map((r) => r.vmdnImportRaw.seconds)));
  perImage('import speed, qcow2 input: casync make time (raw) / vmdn import time (qcow2)', imgs.map((r) => r.importRatioQcow2), (x) => x >= 1, '>= 1.0 per image',
    sum(imgs.map((r) => r.casyncMake.seconds)) / sum(imgs.map((r) => r.vmdnImportQcow2.seconds)));
  const ex = imgs.filter((r) => r.export);
  perImage('export speed: vmdn export time / qemu-img convert time', ex.map((r) => r.export!.ratioQemuImg), (x) => x <= 1.5, '<= 1.5 per image',
    sum(ex.map((r) => r.export!.vmdn.seconds)) / sum(ex.map((r) => r.export!.qemuImg.seconds)));
  perImage('export speed until on disk: (vmdn export + sync) / (qemu-img convert + sync)', ex.map((r) => r.export!.ratioQemuImgDurable), (x) => x <= 1.5, '<= 1.5 per image',
    sum(ex.map((r) => r.export!.vmdn.seconds + (r.export!.vmdn.syncSeconds ?? 0))) / sum(ex.map((r) => r.export!.qemuImg.seconds + (r.export!.qemuImg.syncSeconds ?? 0))));
  t.push({
    target: 'peak RSS of every vmdn command',
    measured: res.maxVmdnRssBytes ? `${(res.maxVmdnRssBytes / 1e6).toFixed(0)} MB (${res.maxVmdnRssCommand.replace(/ --store \S+/, '').replace(/\S*\/([^/\s]+)/g, '$1')})` : 'not measured',
    threshold: '< 300 MB',
    met: res.maxVmdnRssBytes ? res.maxVmdnRssBytes < 300e6 : null,
  });
  t.push({
    target: 'exports bit-identical (qemu-img compare with the source)',
    measured: `${ex.filter((r) => r.export!.identical === true).length}/${ex.length} identical`,
    threshold: 'all',
    met: ex.length ? ex.every((r) => r.export!.identical === true) : null,
  });
  const s = res.stores;
  if (s) {
    t.push({
      target: 'store size on disk: vmdn objects + index.db vs casync chunks + .caibx',
      measured: `${(s.vmdn.disk.total / 1e6).toFixed(1)} MB vs ${(s.casync.total / 1e6).toFixed(1)} MB`,
      threshold: '<= casync',
      met: s.vmdn.disk.total <= s.casync.total,
    });
    t.push({
      target: 'store size, compressed data only: vmdn stored objects vs casync chunk files',
      measured: `${(s.vmdn.storedBytes / 1e6).toFixed(1)} MB vs ${(s.casync.chunkBytes / 1e6).toFixed(1)} MB`,
      threshold: '<= casync',
      met: s.vmdn.storedBytes <= s.casync.chunkBytes,
    });
  }
  for (const d of res.delivery) {
    t.push({
      target: `delivery ${d.target} given ${d.held.join('+')}: vmdn vs casync (chunks + index)`,
      measured: d.vmdn && d.casync ? `${(d.vmdn.total / 1e6).toFixed(1)} MB vs ${(d.casync.total / 1e6).toFixed(1)} MB` : 'not measured',
      threshold: '<= casync',
      met: d.vmdn && d.casync ? d.vmdn.total <= d.casync.total : null,
    });
  }
  return t;
}
