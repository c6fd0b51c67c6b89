/**
 * Push a stored image to an origin: ask which of its objects the origin
 * lacks, upload only those (encoded, as stored; the origin re-hashes each),
 * then name the manifest. The name is set last, so an interrupted push
 * leaves at most unnamed objects and a retry sends only what is still missing.
 * A boot profile recorded on the image goes along: its object with the
 * others, its pointer after the name.
 */
import type { LocalStore } from '../../store/local/local-store.js';
import type { Digest } from '../../store/digest.js';
import { formatImageRef, type ImageRef } from '../../store/image-name.js';
import { resolveImage } from '../../images/names.js';
import { imageObjects } from '../../model/objects.js';
import { throttle, type OnProgress } from '../../util/progress.js';
import { HttpStore, type HttpStoreOptions } from './http-store.js';
import { objectUrlPath, profilePath, refPath, MAX_MISSING_QUERY } from '../wire/http-api.js';
import { VmdnError } from '../../errors.js';

export interface PushOptions {
  url: string;
  token: string | undefined;
  /** true: the name becomes private at the origin; false: public; unset: as it was (a new name: public unless a private prefix). */
  private?: boolean;
  /** Name in the local store. */
  local: ImageRef;
  /** Name at the origin. */
  remote: ImageRef;
  concurrency?: number;
  http?: HttpStoreOptions;
  signal?: AbortSignal;
  onProgress?: OnProgress;
}

export interface PushResult {
  ref: string;
  manifest: Digest;
  objects: number;
  objectsSent: number;
  bytesSent: number;
  /** The boot profile carried with the image (docs/format.md), or null when the local store has none. */
  profile: Digest | null;
  seconds: number;
}

export async function pushImage(store: LocalStore, o: PushOptions): Promise<PushResult> {
  if (!o.token) throw new VmdnError('E_AUTH', 'pushing needs a token: --token-file FILE or VMDN_TOKEN');
  const t0 = Date.now();
  const { digest, manifest } = await resolveImage(store, o.local);
  // the manifest goes last among the objects: the origin checks its chunks when naming it
  const all = [...(await imageObjects(manifest, store)), digest];
  // its boot profile (if one was recorded here) travels as an object, then as a pointer set after the name
  const profile = (await store.getProfile(digest)) ?? null;
  if (profile && (await store.has(profile))) all.push(profile);
  const remote = new HttpStore(o.url, { ...o.http, token: o.token });
  try {
    const missing: Digest[] = [];
    for (let i = 0; i < all.length; i += MAX_MISSING_QUERY) {
      const body = Buffer.from(JSON.stringify({ digests: all.slice(i, i + MAX_MISSING_QUERY) }));
      const r = await remote.request('POST', '/v1/objects/missing', { body, auth: true, headers: { 'content-type': 'application/json' }, signal: o.signal });
      missing.push(...(JSON.parse(r.body.toString('utf8')) as { missing: Digest[] }).missing);
    }
    const progress = throttle(o.onProgress);
    let next = 0;
    let done = 0;
    let bytesSent = 0;
    const worker = async () => {
      while (next < missing.length) {
        const d = missing[next++]!;
        const encoded = await store.getEncoded(d, { signal: o.signal });
        await remote.request('PUT', objectUrlPath(d), { body: encoded, auth: true, headers: { 'content-type': 'application/zstd' }, signal: o.signal });
        bytesSent += encoded.length;
        progress?.({ phase: 'fetch', done: ++done, total: missing.length, unit: 'objects' });
      }
    };
    await Promise.all(Array.from({ length: Math.min(missing.length, o.concurrency ?? 8) }, worker));
    const body = Buffer.from(JSON.stringify({ manifest: digest, ...(o.private !== undefined ? { private: o.private } : {}) }));
    await remote.request('PUT', refPath(o.remote), { body, auth: true, headers: { 'content-type': 'application/json' }, signal: o.signal });
    const sentProfile = profile && all.at(-1) === profile ? profile : null;
    if (sentProfile) {
      const pb = Buffer.from(JSON.stringify({ profile: sentProfile }));
      await remote.request('PUT', profilePath(digest), { body: pb, auth: true, headers: { 'content-type': 'application/json' }, signal: o.signal });
    }
    return { ref: formatImageRef(o.remote), manifest: digest, objects: all.length, objectsSent: missing.length, bytesSent, profile: sentProfile, seconds: (Date.now() - t0) / 1000 };
  } finally {
    await remote.close();
  }
}
