/**
 * `vmdn export NAME out.ova`: a tar of the OVF descriptor (first, as the OVF
 * spec wants) and each disk as a streamOptimized VMDK. A tar header carries
 * its member's size, known only once the disk is written: each disk is
 * written to a private temp dir beside the output first, then the archive
 * is assembled into a temp file and renamed into place. For the same reason
 * an OVA cannot go to a pipe. The descriptor is the one the image was
 * imported with (hrefs, sizes, capacities, format updated) when it fits the
 * disks written, else a generated minimal one.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createVmdkWriter } from '../container/vmdk/writer.js';
import { generateOvf, parseOvf, updateOvf, type OvaDiskOut } from '../container/ova/ovf.js';
import { tarEnd, tarHeader, tarPadding } from '../container/ova/tar-write.js';
import type { ImageNames, ReadableStore } from '../store/types.js';
import { formatImageRef, type ImageRef } from '../store/image-name.js';
import type { StrategyExportOptions } from '../strategy/strategy.js';
import { VmdnError } from '../errors.js';
import { resolveImage } from './names.js';
import { strategyFor } from '../strategy/registry.js';

export interface OvaExportResult { ref: string; out: string; format: 'ova'; virtualSize: number; bytesWritten: number; disks: string[]; ovf: 'stored' | 'generated' }

/** A member-name stem from the output's name: letters, digits, . _ - only. */
const stemOf = (out: string) => (path.basename(out).replace(/\.ova$/i, '').replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '') || 'vm').slice(0, 80);

export async function exportOva(
  store: ReadableStore & { names: ImageNames },
  refs: ImageRef[],
  out: string,
  opts: { signal?: AbortSignal; onProgress?: StrategyExportOptions['onProgress'] },
): Promise<OvaExportResult> {
  if (out === '-') throw new VmdnError('E_USAGE', 'an OVA cannot be written to a pipe: each tar header holds its disk\'s size, known only after the disk is written; give a file name (or export --format vmdk -)');
  const images = [];
  for (const r of refs) images.push(await resolveImage(store, r));
  const dir = path.dirname(path.resolve(out));
  const work = await fs.mkdtemp(path.join(dir, `.${path.basename(out)}.vmdn-tmp-`));
  const tmpOut = path.join(work, 'out.ova');
  try {
    const stem = stemOf(out);
    const disks: OvaDiskOut[] = [];
    let bytesWritten = 0;
    for (const [i, { manifest }] of images.entries()) {
      const href = `${stem}-disk${i + 1}.vmdk`;
      const file = path.join(work, href);
      const w = await createVmdkWriter(file, manifest.virtualSize, 'streamOptimized');
      bytesWritten += (await strategyFor(manifest).export(manifest, store, w, { signal: opts.signal, onProgress: opts.onProgress, workDir: work })).bytesWritten;
      disks.push({ href, size: (await fs.stat(file)).size, capacity: manifest.virtualSize });
    }
    const stored = images[0]!.manifest.ovf;
    let text: string | undefined;
    if (stored) {
      const source = `stored OVF ${stored.slice(0, 12)}`;
      text = updateOvf(parseOvf(new TextDecoder('utf-8', { fatal: true }).decode(await store.get(stored)), source), disks);
    }
    const ovfKind = text === undefined ? 'generated' : 'stored';
    text ??= generateOvf(stem, disks);
    const ovf = Buffer.from(text, 'utf8');
    const fh = await fs.open(tmpOut, 'wx', 0o644);
    try {
      await fh.write(Buffer.concat([tarHeader(`${stem}.ovf`, ovf.length), ovf, tarPadding(ovf.length)]));
      for (const d of disks) {
        await fh.write(tarHeader(d.href, d.size));
        const src = await fs.open(path.join(work, d.href), 'r');
        try {
          const buf = Buffer.alloc(4 << 20);
          for (;;) {
            const { bytesRead } = await src.read(buf, 0, buf.length, null);
            if (bytesRead === 0) break;
            await fh.write(buf, 0, bytesRead);
          }
        } finally {
          await src.close();
        }
        await fh.write(tarPadding(d.size));
      }
      await fh.write(tarEnd());
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmpOut, out);
    const virtualSize = images.reduce((n, x) => n + x.manifest.virtualSize, 0);
    return { ref: formatImageRef(refs[0]!), out, format: 'ova', virtualSize, bytesWritten, disks: disks.map((d) => d.href), ovf: ovfKind };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
