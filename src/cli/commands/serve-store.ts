/** The store `vmdn serve` serves: a local directory, or an S3 bucket, with a local cache of hot objects (--cache) when asked. */
import { LocalStore } from '../../store/local/local-store.js';
import { S3Store } from '../../store/s3/s3-store.js';
import { HotCachedStore } from '../../store/cache/hot-store.js';
import type { PolicyName } from '../../store/cache/eviction.js';
import { parseSize } from '../../util/size.js';
import { VmdnError } from '../../errors.js';

export interface ServeCacheOptions {
  cache?: string;
  maxSize?: string;
  policy: PolicyName;
}

/** A local store is its own cache: --cache there is a mistake worth saying. */
export async function openLocalOrigin(dir: string, o: ServeCacheOptions): Promise<LocalStore> {
  if (o.cache !== undefined || o.maxSize !== undefined) throw new VmdnError('E_USAGE', '--cache and --max-size are for an S3 store (--store s3://...): a local store is read from its own disk');
  return LocalStore.open(dir);
}

export async function openS3Origin(url: string, o: ServeCacheOptions): Promise<S3Store | HotCachedStore<S3Store>> {
  if ((o.cache === undefined) !== (o.maxSize === undefined)) throw new VmdnError('E_USAGE', '--cache DIR and --max-size SIZE go together: the cache needs a budget');
  const s3 = await S3Store.open(url, { create: false });
  if (o.cache === undefined) return s3;
  try {
    return await HotCachedStore.open(s3, { dir: o.cache, maxBytes: parseSize(o.maxSize!), policy: o.policy });
  } catch (e) {
    await s3.close();
    throw e;
  }
}
