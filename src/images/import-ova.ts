/**
 * Importing an OVA: every disk its OVF names (or the one `--disk N` picks),
 * each as its own image (NAME-disk1, NAME-disk2, ... or NAME alone), all
 * sharing the OVF descriptor, kept as one object their manifests reference.
 * The archive and the descriptor are checked whole before the first byte of
 * a disk is read, and the names are given only once every disk is in: a bad
 * OVA leaves nothing in the store.
 */
import { openOva, type OvaDisk } from '../container/ova/archive.js';
import type { Digest } from '../store/digest.js';
import { formatImageRef, parseImageRef, type ImageRef } from '../store/image-name.js';
import { VmdnError } from '../errors.js';
import { nameImage } from './names.js';
import { importDisk, type ImportOptions, type ImportResult, type ImportStore } from './import-disk.js';

export async function importOva(store: ImportStore, file: string, ref: ImageRef, opts: ImportOptions): Promise<ImportResult> {
  const ova = await openOva(file);
  const added: Digest[] = [];
  try {
    let chosen: OvaDisk[] = ova.disks;
    if (opts.disk !== undefined) {
      const d = ova.disks.find((x) => x.index === opts.disk);
      if (!d) throw new VmdnError('E_USAGE', `--disk ${opts.disk}: ${file} has ${ova.disks.length} disk(s)`, { disk: opts.disk, disks: ova.disks.length });
      chosen = [d];
    }
    // checked up front: a name made too long by its suffix fails before anything is stored
    const refs = chosen.map((d) => (opts.disk !== undefined ? ref : parseImageRef(`${ref.name}-disk${d.index}:${ref.tag}`)));
    const put = await store.put(ova.ovfBytes);
    if (put.added) added.push(put.digest);
    const ovf = put.digest;
    const done = [];
    for (const d of chosen) {
      const disk = await ova.openDisk(d);
      try {
        done.push({ d, ...(await importDisk(store, disk, opts, added, { ovf })) });
      } finally {
        await disk.close();
      }
    }
    for (let i = 0; i < done.length; i++) await nameImage(store, refs[i]!, done[i]!.digest, done[i]!.manifest, undefined, done[i]!.r.stats.dataBytes);
    const images = done.map((x, i) => ({ ref: formatImageRef(refs[i]!), manifest: x.digest, disk: x.d.index, member: x.d.member.name, stats: x.r.stats }));
    const first = done[0]!;
    return {
      ref: images[0]!.ref, manifest: first.digest, stats: first.r.stats,
      notes: [`OVA ${ova.ovfName}: ${ova.disks.length} disk(s), imported ${images.map((x) => `${x.member} as ${x.ref}`).join(', ')}`, ...ova.notes, ...done.flatMap((x) => x.r.notes)],
      ovf, images,
    };
  } catch (err) {
    for (const d of added) await store.delete(d).catch(() => {});
    throw err;
  } finally {
    await ova.close();
  }
}
