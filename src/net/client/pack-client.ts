/**
 * The client side of packs (pack.ts): ask, decode against the references the
 * server used, verify every record. A server without packs (404, 405, 400 or
 * 501: an older vmdn, an edge, an HTTP cache configured to refuse them) turns
 * them off for this HttpStore, and the caller takes the objects by batch or GET;
 * so does a busy one (503: the origin's pack slots are taken), for this call.
 */
import type { Digest } from '../../store/digest.js';
import { VmdnError } from '../../errors.js';
import type { HttpStore } from './http-store.js';
import { maxEncodedSize } from '../../store/codec.js';
import { decodePack, maxPackContent, PACK_CONTENT_TYPE, PACK_PATH, PACK_REFS_HEADER, type PackObject } from '../wire/pack.js';

const unsupported = new WeakSet<HttpStore>();

export interface PackReply {
  objects: PackObject[];
  /** Bytes of the pack on the wire. */
  bytes: number;
  refsUsed: number;
}

/**
 * One pack of `digests`, compressed against `refs` (objects the caller holds;
 * `readRef` gives their verified bytes). Undefined when the server has no packs.
 */
export async function fetchPack(remote: HttpStore, digests: Digest[], refs: Digest[], readRef: (d: Digest) => Promise<Uint8Array>, signal?: AbortSignal): Promise<PackReply | undefined> {
  if (unsupported.has(remote) || !remote.batches) return undefined;
  const body = Buffer.from(JSON.stringify({ digests, refs }));
  let r;
  try {
    // the answer can be no larger than this request's objects; a busy origin (503) is not waited for
    r = await remote.request('POST', PACK_PATH, { headers: { 'content-type': 'application/json' }, body, signal, maxBody: maxEncodedSize(maxPackContent(digests.length)), returnBusy: true });
  } catch (err) {
    if (err instanceof VmdnError && (err.code === 'E_NOT_FOUND' || err.code === 'E_USAGE')) {
      unsupported.add(remote);
      return undefined;
    }
    throw err;
  }
  // busy: this pull takes the rest by batch or GET, without turning packs off for later pulls through this store
  if (r.status === 503) return undefined;
  if (r.status !== 200 || r.headers['content-type'] !== PACK_CONTENT_TYPE) {
    unsupported.add(remote);
    return undefined;
  }
  const used = Number(r.headers[PACK_REFS_HEADER] ?? 'x');
  if (!Number.isSafeInteger(used) || used < 0 || used > refs.length) {
    throw new VmdnError('E_CORRUPT_OBJECT', `pack from ${remote.base}: bad ${PACK_REFS_HEADER} header`, { source: remote.base });
  }
  const refData = await Promise.all(refs.slice(0, used).map((d) => readRef(d)));
  const objects = decodePack(r.body, refData, new Set(digests), remote.base);
  remote.stats.objectsFetched += objects.length;
  remote.stats.bytesFetched += r.body.length;
  return { objects, bytes: r.body.length, refsUsed: used };
}
