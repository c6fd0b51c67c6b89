/** Image names of a local store: rows of its SQLite index (sqlite-index.ts), behind the ImageNames interface. */
import type { Digest } from '../digest.js';
import type { ImageNames, ImageRecord } from '../types.js';
import type { StoreIndex } from './sqlite-index.js';

export class LocalNames implements ImageNames {
  constructor(private readonly index: StoreIndex) {}
  async list(): Promise<ImageRecord[]> {
    return this.index.listImages();
  }
  async get(name: string, tag: string): Promise<ImageRecord | undefined> {
    return this.index.getImage(name, tag);
  }
  async set(record: ImageRecord, refs: Iterable<Digest>): Promise<void> {
    this.index.putImage(record, refs);
  }
  async remove(name: string, tag: string): Promise<boolean> {
    return this.index.removeImage(name, tag);
  }
}
