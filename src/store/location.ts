import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalStore } from './local/local-store.js';
import { S3Store } from './s3/s3-store.js';
import { isS3Url } from './s3/location.js';
import { VmdnError } from '../errors.js';

/** --store, else $VMDN_STORE, else $XDG_DATA_HOME/vmdn or ~/.local/share/vmdn. */
export function resolveStoreDir(flag?: string): string {
  // commands that reach here need a local directory (pull's cache, nbd, stats ...)
  if (s3StoreUrl(flag)) throw new VmdnError('E_USAGE', `${flag ?? '$VMDN_STORE'} is an S3 store: this command needs a local store directory (S3 stores work with import, export, images, rm, gc, verify, serve, inspect, ls, cat, diff, nbd and boot; docs/format.md, "S3 store")`);
  if (flag) return path.resolve(flag);
  if (process.env.VMDN_STORE) return path.resolve(process.env.VMDN_STORE);
  const data = process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(data, 'vmdn');
}

/**
 * Fail with E_NOT_FOUND unless `dir` holds a store. Opening a store creates it, so
 * commands that only read or maintain one check first: a mistyped --store must be
 * an error, not a new empty store that "verifies OK".
 */
export function requireStore(dir: string): void {
  if (!fs.existsSync(path.join(dir, 'index.db'))) {
    throw new VmdnError('E_NOT_FOUND', `no store at ${dir} (check --store or $VMDN_STORE; "vmdn import" creates one)`, { store: dir });
  }
}

/** Open the store, run `fn`, close it. `create: false` for commands that must not create one. */
export async function withStore<T>(flag: string | undefined, fn: (s: LocalStore) => Promise<T>, opts: { create?: boolean } = {}): Promise<T> {
  const dir = resolveStoreDir(flag);
  if (opts.create === false) requireStore(dir);
  const store = await LocalStore.open(dir);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** --store (or $VMDN_STORE) names an S3 store: s3://BUCKET[/PREFIX]?endpoint=URL&region=R. */
export function s3StoreUrl(flag?: string): string | undefined {
  const v = flag ?? process.env.VMDN_STORE;
  return isS3Url(v) ? v : undefined;
}

/** Like withStore, for commands that work on any image store: a local directory or an S3 bucket. */
export async function withImageStore<T>(flag: string | undefined, fn: (s: LocalStore | S3Store) => Promise<T>, opts: { create?: boolean } = {}): Promise<T> {
  const url = s3StoreUrl(flag);
  if (!url) return withStore(flag, fn, opts);
  const store = await S3Store.open(url, { create: opts.create !== false });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
