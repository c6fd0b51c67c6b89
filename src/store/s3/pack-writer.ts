/**
 * Buffers new objects into packs of about `packBytes` and uploads each as
 * two S3 objects: the pack, then its index (both named by the pack's
 * SHA-256, both written with If-None-Match: *, so never overwritten). An
 * object is readable from the buffer at once; it is in the store for other
 * processes once its pack's index is up. `flush` waits for every upload
 * (image names are written only after the objects they need).
 */
import { createHash } from 'node:crypto';
import type { Digest } from '../digest.js';
import type { S3 } from './client.js';
import { encodePackIndex, type PackEntry } from './pack-format.js';
import { indexKey, packKey, type PackIndex } from './pack-index.js';
import { VmdnError } from '../../errors.js';

export interface Pending { encoded: Uint8Array; size: number }

export interface PackWriterOptions {
  packBytes: number;
  inFlight: number;
  /**
   * How long an upload keeps retrying while the S3 server is unreachable or
   * answers 5xx (a gateway restart): the objects stay buffered and readable,
   * writers wait for room, and the push that sent them carries on. Kept below
   * a push client's idle timeout (60 s), which then retries on its own.
   */
  retryForMs: number;
}

/** The S3 server was not there or failed (no answer, 5xx): worth another try; 4xx are not. */
export function transient(e: unknown): boolean {
  if (!(e instanceof VmdnError)) return false;
  const s = (e.data as { status?: number } | undefined)?.status;
  return e.code === 'E_UNREACHABLE' || (e.code === 'E_STORE' && (s === undefined || s >= 500));
}

export class PackWriter {
  readonly pending = new Map<Digest, Pending>();
  private open: { digest: Digest; p: Pending }[] = [];
  private openBytes = 0;
  private uploads = new Set<Promise<void>>();
  private failed?: unknown;
  /** Uploads tried again after a transient failure (stats). */
  retries = 0;

  constructor(private readonly s3: S3, private readonly index: PackIndex, private readonly opts: PackWriterOptions = { packBytes: 12 << 20, inFlight: 6, retryForMs: 45_000 }) {}

  /**
   * Add an object (the caller checked it is absent); resolves when the buffer
   * has room again. An upload that failed for good is reported once, here or
   * by flush, and then forgotten: its objects went back into the buffer, so
   * the next pack carries them (a failure kept for ever made every later
   * request of a long-running origin fail with it, after the S3 server was
   * back: the CI flake of the radosgw restart test).
   */
  async add(digest: Digest, encoded: Uint8Array, size: number): Promise<void> {
    if (this.failed) throw this.takeFailure();
    const p = { encoded, size };
    this.pending.set(digest, p);
    this.open.push({ digest, p });
    this.openBytes += encoded.length;
    if (this.openBytes >= this.opts.packBytes) await this.seal();
  }

  private async seal(): Promise<void> {
    if (this.open.length === 0) return;
    const objs = this.open;
    this.open = [];
    this.openBytes = 0;
    const u = this.upload(objs).catch((e) => {
      // kept for the next pack: a flush after the server is back uploads them (a push resumes)
      this.failed ??= e;
      const back = objs.filter((o) => this.pending.get(o.digest) === o.p);
      this.open.unshift(...back);
      this.openBytes += back.reduce((n, o) => n + o.p.encoded.length, 0);
    });
    this.uploads.add(u);
    void u.finally(() => this.uploads.delete(u));
    while (this.uploads.size >= this.opts.inFlight) await Promise.race(this.uploads);
  }

  private async upload(objs: { digest: Digest; p: Pending }[]): Promise<void> {
    const entries: PackEntry[] = [];
    let off = 0;
    for (const o of objs) {
      entries.push({ digest: o.digest, offset: off, stored: o.p.encoded.length, size: o.p.size });
      off += o.p.encoded.length;
    }
    const pack = Buffer.concat(objs.map((o) => o.p.encoded));
    const id = createHash('sha256').update(pack).digest('hex');
    // an existing pack of this id has these very bytes: nothing to write (so a retry of a PUT that did land is harmless)
    await this.retrying(() => this.s3.putIf(packKey(id), pack, { create: true }));
    const idx = encodePackIndex(entries, pack.length);
    await this.retrying(() => this.s3.putIf(indexKey(id), idx, { create: true }));
    this.index.add(id, entries, pack.length, new Date(), true);
    for (const o of objs) if (this.pending.get(o.digest) === o.p) this.pending.delete(o.digest);
  }

  /** Retry `fn` with backoff while the failure is transient, for up to retryForMs. */
  private async retrying<T>(fn: () => Promise<T>): Promise<T> {
    const until = Date.now() + this.opts.retryForMs;
    for (let delay = 200; ; delay = Math.min(delay * 2, 5000)) {
      try {
        return await fn();
      } catch (e) {
        if (!transient(e) || Date.now() + delay > until) throw e;
        this.retries++;
        await new Promise((r) => setTimeout(r, delay / 2 + Math.random() * delay / 2));
      }
    }
  }

  private takeFailure(): VmdnError {
    const e = this.failed;
    this.failed = undefined;
    return e instanceof VmdnError ? e : new VmdnError('E_STORE', `S3 pack upload failed: ${String(e)}`, {}, { cause: e });
  }

  /** Upload what is buffered and wait for every upload; fails if any failed. */
  async flush(): Promise<void> {
    await this.seal();
    while (this.uploads.size) await Promise.all(this.uploads);
    if (this.failed) throw this.takeFailure();
  }

  /** Drop an object still in the buffer (an import taking back what it added); false once it is packed. */
  discard(d: Digest): boolean {
    const i = this.open.findIndex((o) => o.digest === d);
    if (i < 0) return false;
    this.openBytes -= this.open[i]!.p.encoded.length;
    this.open.splice(i, 1);
    this.pending.delete(d);
    return true;
  }
}
