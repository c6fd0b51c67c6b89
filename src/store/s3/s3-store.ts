/**
 * An object store in an S3 bucket (docs/format.md, "S3 store"): objects
 * packed into pack objects with an index each (pack-writer.ts), found
 * through an in-memory index of every pack (pack-index.ts), read by ranged
 * GET and verified by hash on every read; image names in the bucket too
 * (s3-names.ts). Several processes on several machines may open one.
 */
import { sha256, assertDigest, type Digest } from '../digest.js';
import { decodeObject, encodeObject } from '../codec.js';
import type { ImageStore, ObjectStat, PutResult, ReadOptions } from '../types.js';
import { VmdnError } from '../../errors.js';
import { S3, type S3Counts } from './client.js';
import { parseS3Url, type S3Location } from './location.js';
import { PackIndex } from './pack-index.js';
import { PackReader } from './pack-reader.js';
import { PackWriter } from './pack-writer.js';
import { S3Names } from './s3-names.js';

export interface S3StoreOptions {
  /** Create the bucket if missing (import); else a missing bucket is E_NOT_FOUND. */
  create?: boolean;
  packBytes?: number;
  /** How long a pack upload retries while S3 is unreachable (pack-writer.ts). */
  retryForMs?: number;
}

export class S3Store implements ImageStore {
  readonly index: PackIndex;
  readonly names: S3Names;
  private readonly reader: PackReader;
  private readonly writer: PackWriter;

  private constructor(readonly s3: S3, opts: S3StoreOptions) {
    this.index = new PackIndex(s3);
    this.reader = new PackReader(s3, this.index);
    this.writer = new PackWriter(s3, this.index, { packBytes: opts.packBytes ?? 12 << 20, inFlight: 6, retryForMs: opts.retryForMs ?? 45_000 });
    this.names = new S3Names(s3, { ensurePresent: (refs) => this.ensurePresent(refs) });
  }

  static async open(where: string | S3Location, opts: S3StoreOptions = {}): Promise<S3Store> {
    const s3 = await S3.connect(typeof where === 'string' ? parseS3Url(where) : where);
    try {
      await s3.ensureBucket(opts.create ?? true);
      const store = new S3Store(s3, opts);
      await store.index.refresh();
      return store;
    } catch (e) {
      s3.close();
      throw e;
    }
  }

  get url(): string {
    const l = this.s3.loc;
    return `s3://${l.bucket}/${l.prefix}`;
  }

  /** A miss looks for packs other processes wrote since (a LIST begun after the miss, shared by concurrent misses): origins sharing a bucket serve each other's uploads at once. */
  async stat(d: Digest): Promise<ObjectStat | undefined> {
    assertDigest(d);
    const s = this.statNow(d);
    if (s) return s;
    await this.index.refreshAfterNow();
    return this.statNow(d);
  }

  /** From memory: objects of condemned packs count as absent, so a writer packs them anew. */
  private statNow(d: Digest): ObjectStat | undefined {
    const p = this.writer.pending.get(d);
    if (p) return { digest: d, size: p.size, storedSize: p.encoded.length };
    const l = this.index.live(d);
    return l && { digest: d, size: l.size, storedSize: l.stored };
  }

  async has(d: Digest): Promise<boolean> {
    return (await this.stat(d)) !== undefined;
  }

  async statMany(digests: Iterable<Digest>): Promise<Map<Digest, ObjectStat>> {
    const out = new Map<Digest, ObjectStat>();
    for (const d of digests) {
      const s = this.statNow(d);
      if (s) out.set(d, s);
    }
    return out;
  }

  async getEncoded(d: Digest, opts?: ReadOptions): Promise<Uint8Array> {
    assertDigest(d);
    const p = this.writer.pending.get(d);
    if (p) return p.encoded;
    let at = this.index.objects.get(d);
    if (!at) {
      // written by another process since we last looked?
      await this.index.refreshAfterNow();
      at = this.index.objects.get(d);
    }
    if (!at) throw new VmdnError('E_NOT_FOUND', `object ${d} not in ${this.url}`, { digest: d });
    try {
      return await this.reader.read(d, at, opts?.signal);
    } catch (e) {
      // its pack was deleted by gc since we loaded the index: another pack may hold it now
      if (!(e instanceof VmdnError && e.code === 'E_NOT_FOUND')) throw e;
      await this.index.refresh();
      const now = this.index.objects.get(d);
      if (!now || now.pack === at.pack) throw e;
      return this.reader.read(d, now, opts?.signal);
    }
  }

  async get(d: Digest, opts?: ReadOptions): Promise<Uint8Array> {
    const enc = await this.getEncoded(d, opts);
    try {
      return decodeObject(d, enc, this.url);
    } catch (e) {
      this.reader.drop(d);
      throw e;
    }
  }

  async put(data: Uint8Array, opts: { digest?: Digest } & ReadOptions = {}): Promise<PutResult> {
    const digest = sha256(data); // never trusted from the caller: the bucket is shared
    const had = this.statNow(digest);
    if (had) return { ...had, added: false };
    const encoded = encodeObject(data);
    return this.add(digest, encoded, data.length);
  }

  async putEncoded(digest: Digest, encoded: Uint8Array): Promise<PutResult> {
    assertDigest(digest);
    const had = this.statNow(digest);
    if (had) return { ...had, added: false };
    const data = decodeObject(digest, encoded, 'upload'); // verifies the hash
    return this.add(digest, Uint8Array.from(encoded), data.length);
  }

  private async add(digest: Digest, encoded: Uint8Array, size: number): Promise<PutResult> {
    // a concurrent put of the same bytes may have won while we encoded
    const had = this.statNow(digest);
    if (had) return { ...had, added: false };
    await this.writer.add(digest, encoded, size);
    return { digest, size, storedSize: encoded.length, added: true };
  }

  /** An import taking back an object it added: dropped while still buffered; once packed, gc frees it. */
  async delete(d: Digest): Promise<void> {
    this.writer.discard(d);
  }

  /** A new copy of an object in a new pack (gc moving the live part of a mostly dead pack). */
  async repack(d: Digest): Promise<void> {
    const enc = await this.getEncoded(d);
    const data = decodeObject(d, enc, this.url);
    await this.writer.add(d, Uint8Array.from(enc), data.length);
  }

  /** What the store holds (from the pack index) and what this process asked of S3 (origin /v1/stats). */
  async totals(): Promise<{ objects: number; size: number; stored: number; s3: S3Counts & { uploadRetries: number } }> {
    let size = 0;
    let stored = 0;
    for (const o of this.index.objects.values()) {
      size += o.size;
      stored += o.stored;
    }
    return { objects: this.index.objects.size, size, stored, s3: { ...this.s3.counts, uploadRetries: this.writer.retries } };
  }

  /** Upload every buffered object. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  /**
   * Before a name is written: our objects uploaded, the index fresh, and any
   * object that lives only in a pack gc condemned copied into a new pack (so
   * gc's sweep, a grace period later, cannot take it). Returns the absent ones.
   */
  private async ensurePresent(refs: Digest[]): Promise<Digest[]> {
    await this.writer.flush();
    await this.index.refresh();
    const rescue = refs.filter((d) => !this.statNow(d) && this.index.objects.has(d));
    for (const d of rescue) await this.putEncoded(d, await this.getEncoded(d));
    await this.writer.flush();
    return refs.filter((d) => !this.statNow(d));
  }

  async close(): Promise<void> {
    try {
      await this.writer.flush();
    } finally {
      this.s3.close();
    }
  }
}

