/** Counting what a local store holds, for tests that check what was fetched or cached. */
import { LocalStore } from '../../src/store/local/local-store.js';

/** Number of objects in the local store at `dir` (chunks, manifests, everything it lists). */
export async function countObjects(dir: string): Promise<number> {
  const s = await LocalStore.open(dir);
  try {
    let n = 0;
    for await (const _o of s.list()) n++;
    return n;
  } finally {
    await s.close();
  }
}
