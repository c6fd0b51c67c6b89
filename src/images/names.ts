/**
 * Naming images: the only code that gives a name to a manifest (import, pull
 * and the origin's uploads all come here), and the one way back from a name.
 */
import type { Digest } from '../store/digest.js';
import { asWriter, type ImageStore, type ReadableStore, type ImageNames } from '../store/types.js';
import { formatImageRef, type ImageRef } from '../store/image-name.js';
import { dataBytes, decodeManifest, type Manifest } from '../model/manifest.js';
import { imageObjects } from '../model/objects.js';
import { VmdnError } from '../errors.js';

/**
 * Name `digest` (whose manifest is `manifest`) as `ref`, recording as its
 * references every object the image needs: `refs` if the caller already
 * walked them (model/objects.ts), else walked here. The manifest is added.
 */
export async function nameImage(store: ImageStore, ref: ImageRef, digest: Digest, manifest: Manifest, refs?: Iterable<Digest>, dataSize = dataBytes(manifest)): Promise<void> {
  refs ??= await imageObjects(manifest, store);
  await store.names.set(
    {
      ...ref, manifest: digest, created: new Date().toISOString(), virtualSize: manifest.virtualSize,
      allocatedSize: manifest.allocated, dataSize, format: manifest.source.format,
    },
    [...refs, digest],
  );
}

export async function loadManifest(store: ReadableStore, digest: Digest): Promise<Manifest> {
  return decodeManifest(await store.get(digest), `object ${digest.slice(0, 12)}`);
}

export async function resolveImage(store: ReadableStore & { names: ImageNames }, ref: ImageRef, where = 'the store'): Promise<{ digest: Digest; manifest: Manifest }> {
  const row = await store.names.get(ref.name, ref.tag);
  if (!row) throw new VmdnError('E_NOT_FOUND', `no image ${formatImageRef(ref)} in ${where}`, { ref: formatImageRef(ref) });
  return { digest: row.manifest, manifest: await loadManifest(store, row.manifest) };
}

/** Remove names (all or none: an unknown one is E_NOT_FOUND before any goes); objects stay until gc. */
export async function removeImages(store: { names: ImageNames }, refs: ImageRef[]): Promise<void> {
  const known = await Promise.all(refs.map((r) => store.names.get(r.name, r.tag)));
  const missing = refs.filter((_, i) => !known[i]);
  if (missing.length) throw new VmdnError('E_NOT_FOUND', `no image ${missing.map(formatImageRef).join(', ')}`, { refs: missing.map(formatImageRef) });
  await asWriter(store, async () => {
    for (const r of refs) await store.names.remove(r.name, r.tag);
  });
}
