import os from 'node:os';
import path from 'node:path';
import { LocalStore } from '../store/local-store.js';

/** --store, else $VMDN_STORE, else $XDG_DATA_HOME/vmdn or ~/.local/share/vmdn. */
export function resolveStoreDir(flag?: string): string {
  if (flag) return path.resolve(flag);
  if (process.env.VMDN_STORE) return path.resolve(process.env.VMDN_STORE);
  const data = process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share');
  return path.join(data, 'vmdn');
}

export async function withStore<T>(flag: string | undefined, fn: (s: LocalStore) => Promise<T>): Promise<T> {
  const store = await LocalStore.open(resolveStoreDir(flag));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
