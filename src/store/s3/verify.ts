/**
 * `vmdn verify` on an S3 store: every pack read whole and every object in it
 * decoded and re-hashed; every name's references present.
 */
import { asVmdnError } from '../../errors.js';
import type { OnProgress } from '../../util/progress.js';
import { decodeObject } from '../codec.js';
import type { Digest } from '../digest.js';
import { packKey } from './pack-index.js';
import { liveRefs } from './gc.js';
import type { S3Store } from './s3-store.js';

export interface S3VerifyProblem { digest: Digest; problem: 'corrupt' | 'missing'; detail: string; image?: string }
export interface S3VerifyResult { objectsChecked: number; bytesChecked: number; imagesChecked: number; packsChecked: number; problems: S3VerifyProblem[] }

export async function verifyS3Store(store: S3Store, opts: { signal?: AbortSignal; onProgress?: OnProgress } = {}): Promise<S3VerifyResult> {
  await store.flush();
  await store.index.refresh();
  const res: S3VerifyResult = { objectsChecked: 0, bytesChecked: 0, imagesChecked: 0, packsChecked: 0, problems: [] };
  const packs = [...store.index.packs.values()];
  const good = new Set<Digest>();
  const total = packs.reduce((n, p) => n + p.entries.length, 0);
  for (const p of packs) {
    opts.signal?.throwIfAborted();
    const r = await store.s3.get(packKey(p.id));
    res.packsChecked++;
    for (const e of p.entries) {
      res.objectsChecked++;
      if (!r) { res.problems.push({ digest: e.digest, problem: 'missing', detail: `pack ${p.id.slice(0, 12)} is gone` }); continue; }
      try {
        const data = decodeObject(e.digest, r.body.subarray(e.offset, e.offset + e.stored), `pack ${p.id.slice(0, 12)}`);
        if (data.length !== e.size) throw new Error(`size ${data.length}, index says ${e.size}`);
        res.bytesChecked += data.length;
        good.add(e.digest);
      } catch (err) {
        res.problems.push({ digest: e.digest, problem: 'corrupt', detail: asVmdnError(err).message });
      }
    }
    opts.onProgress?.({ phase: 'verify', done: res.objectsChecked, total, unit: 'objects' });
  }
  const { images, refs } = await liveRefs(store);
  for (const img of images) {
    res.imagesChecked++;
    for (const d of refs.get(img.manifest) ?? []) {
      if (!good.has(d) && !res.problems.some((p) => p.digest === d && p.problem === 'corrupt')) {
        res.problems.push({ digest: d, problem: 'missing', detail: 'object referenced by image is missing', image: `${img.name}:${img.tag}` });
      }
    }
  }
  return res;
}
