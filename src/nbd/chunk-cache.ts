/**
 * Decoded objects a device reads from, a few kept (LRU): a guest reads a
 * file's chunk in many small requests. One fetch per object however many
 * reads wait for it; a failed fetch is forgotten so the next read tries again.
 */
import type { ReadableStore } from '../store/types.js';
import { VmdnError } from '../errors.js';

export class ChunkCache {
  private readonly entries = new Map<string, Promise<Uint8Array>>();

  constructor(private readonly store: ReadableStore, private readonly max = 32) {}

  /** The object's bytes (verified by the store), refused unless it has the `length` the tree says. */
  get(digest: string, length: number): Promise<Uint8Array> {
    let p = this.entries.get(digest);
    if (p) {
      this.entries.delete(digest); // refresh its place
      this.entries.set(digest, p);
      return p;
    }
    p = this.store.get(digest).then((data) => {
      if (data.length !== length) throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${data.length} bytes, the tree says ${length}`, { digest });
      return data;
    });
    p.catch(() => this.entries.delete(digest));
    this.entries.set(digest, p);
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    return p;
  }

  clear(): void {
    this.entries.clear();
  }
}
