/** The store commands' S3 side (--store s3://...): images, gc and verify of an S3Store. */
import { S3Store } from '../../store/s3/s3-store.js';
import { collectS3Garbage, imageUsage } from '../../store/s3/gc.js';
import { verifyS3Store } from '../../store/s3/verify.js';
import { printJson, progressBar, type GlobalOptions } from '../output.js';
import { humanBytes } from '../../util/size.js';
import { VmdnError } from '../../errors.js';

export { S3Store };

/** `--grace`: 90s, 30m, 1h, 2d, or plain seconds. */
export function parseGrace(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)?$/.exec(s.trim());
  if (!m) throw new VmdnError('E_USAGE', `--grace ${s}: give a duration like 90s, 30m, 1h or 2d`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd' ?? 's'] * 1000;
}

export async function s3ImageRows(s: S3Store) {
  const usage = await imageUsage(s);
  return (await s.names.list()).map((i) => ({
    ref: `${i.name}:${i.tag}`, manifest: i.manifest, format: i.format, created: i.created,
    virtualBytes: i.virtualSize, allocatedBytes: i.allocatedSize, dataBytes: i.dataSize,
    storedBytes: usage.get(i.manifest)?.stored ?? 0, uniqueBytes: usage.get(i.manifest)?.unique ?? 0, profile: null,
  }));
}

/** `vmdn stats` of a bucket: the same totals as a local store's (images from the names, objects from the pack index). */
export async function s3StoreStats(s: S3Store) {
  const t = await s.totals();
  const imgs = await s.names.list();
  return {
    images: imgs.length, objects: t.objects, objectBytes: t.size, storedBytes: t.stored,
    logicalBytes: imgs.reduce((n, i) => n + i.dataSize, 0), virtualBytes: imgs.reduce((n, i) => n + i.virtualSize, 0),
  };
}

export async function s3Gc(s: S3Store, o: GlobalOptions & { dryRun?: boolean; grace: string }): Promise<void> {
  const r = await collectS3Garbage(s, { graceMs: parseGrace(o.grace), dryRun: o.dryRun });
  if (o.json) return printJson({ ...r, removedObjects: undefined });
  console.log(`${o.dryRun ? 'would condemn' : 'condemned'} ${r.condemnedPacks} packs (${r.repackedPacks} repacked first), deleted ${r.deletedPacks} packs condemned more than ${o.grace} ago (${humanBytes(r.freedBytes)}); ${r.liveObjects} objects live in ${r.images} images`);
}

export async function s3Verify(s: S3Store, o: GlobalOptions): Promise<number> {
  const bar = progressBar(o, 'verify');
  const r = await verifyS3Store(s, { onProgress: bar.onProgress }).finally(bar.stop);
  if (o.json) printJson({ ok: r.problems.length === 0, ...r });
  else {
    console.log(`checked ${r.objectsChecked} objects (${humanBytes(r.bytesChecked)}) in ${r.packsChecked} packs and ${r.imagesChecked} images`);
    for (const p of r.problems) console.log(`  ${p.problem.padEnd(12)} ${p.digest.slice(0, 16)}${p.image ? ` (${p.image})` : ''}: ${p.detail}`);
    console.log(r.problems.length === 0 ? 'store OK' : `${r.problems.length} problems`);
  }
  return r.problems.length === 0 ? 0 : 5;
}
