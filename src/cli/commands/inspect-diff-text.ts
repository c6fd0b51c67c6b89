/** `vmdn diff` for humans: one line per difference, "no differences" when there are none. */
import type { DiffResult } from '../../inspect/diff.js';
import type { RangeList } from '../../inspect/diff-disk.js';
import { displayPath, escapeBytes } from '../../inspect/display.js';
import { safe } from '../output.js';
import { humanBytes } from '../../util/size.js';

function ranges(r: RangeList, indent: string): string[] {
  const out = r.ranges.map((x) => `${indent}${x.kind ? `${x.kind.padEnd(8)} ` : ''}0x${x.start.toString(16)}-0x${x.end.toString(16)} (${humanBytes(x.end - x.start)})`);
  if (r.truncated) out.push(`${indent}... ${r.count - r.ranges.length} more ranges`);
  return out;
}

export function printDiff(r: DiffResult): string[] {
  const out: string[] = [];
  switch (r.layer) {
    case 'disk':
      if (r.virtualSize.a !== r.virtualSize.b) out.push(`virtual size: ${r.virtualSize.a} -> ${r.virtualSize.b}`);
      for (const h of r.table.header) out.push(`partition table: ${h} differs`);
      for (const p of r.table.partitions) out.push(`partition ${p.index}: ${p.change}${p.fields ? ` (${p.fields.join(', ')})` : ''}`);
      if (r.bytes.count) out.push(`${humanBytes(r.bytes.bytes)} differ in ${r.bytes.count} ranges (by ${r.bytes.method}):`, ...ranges(r.bytes, '  '));
      break;
    case 'blocks':
      for (const v of r.volumes) {
        if (v.note) { out.push(`volume ${v.index} (${v.kind}): ${safe(v.note)}`); continue; }
        if (!v.blocks!.count) continue;
        out.push(`volume ${v.index} (${v.kind}): ${humanBytes(v.blocks!.bytes)} in ${v.blocks!.count} ranges (offsets within the filesystem):`, ...ranges(v.blocks!, '  '));
      }
      break;
    case 'files':
      for (const v of r.volumes) {
        if (v.note) { out.push(`volume ${v.index} (${v.kind}): ${safe(v.note)}`); continue; }
        const f = v.files!;
        const pre = r.volumes.length > 1 ? `[${v.index}] ` : '';
        for (const e of f.removed) out.push(`${pre}- ${displayPath(e)}`);
        for (const e of f.added) out.push(`${pre}+ ${displayPath(e)}`);
        for (const c of f.changed) out.push(`${pre}= ${displayPath(c)}  (${c.what.join(', ')}${c.xattrs ? `: ${c.xattrs.map((x) => escapeBytes(Buffer.from(x))).join(' ')}` : ''})`);
        for (const e of f.errors) out.push(`${pre}! ${escapeBytes(Buffer.from(e))}`);
      }
      break;
    case 'packages':
      for (const p of r.packages.removed) out.push(safe(`- ${p.name} ${p.version} ${p.arch}`));
      for (const p of r.packages.added) out.push(safe(`+ ${p.name} ${p.version} ${p.arch}`));
      for (const p of r.packages.upgraded) out.push(safe(`^ ${p.name} ${p.from} -> ${p.to}`));
      for (const p of r.packages.downgraded) out.push(safe(`v ${p.name} ${p.from} -> ${p.to}`));
      break;
  }
  if (r.identical) out.push('no differences');
  return out;
}
