/**
 * The origin's read side for objects: one object (GET/HEAD), batches and
 * packs (docs/http-api.md). What a principal may not see is absent to it,
 * exactly as a missing object; bodies are the stored bytes, sent as they are.
 */
import http from 'node:http';
import fs from 'node:fs';
import { hasEncodedFiles, hasEncodedMany, type EncodedMany, type ObjectStat } from '../../store/types.js';
import type { Digest } from '../../store/digest.js';
import { VmdnError } from '../../errors.js';
import { sendBusy, serveObjectBuffer, serveObjectFile } from '../wire/http-api.js';
import type { Principal } from './auth.js';
import type { Visibility } from './visibility.js';
import { setObjectCacheControl } from './origin-access.js';
import { BATCH_BUDGET, ByteBudget, readBatchRequest, serveBatch } from '../wire/batch.js';
import { PACK_RETRY_AFTER, PackSlots, readPackRequest, servePack, type PackRequest } from '../wire/pack.js';
import { PackBuilder } from './pack-worker.js';
import type { OriginStats, OriginStore } from './origin-types.js';

export class OriginObjects {
  private readonly packer = new PackBuilder();
  // unauthenticated work is bounded however many requests arrive (pack.ts, batch.ts)
  private readonly packSlots = new PackSlots();
  private readonly batchBudget = new ByteBudget(BATCH_BUDGET);

  constructor(
    private readonly store: OriginStore,
    private readonly visibility: Visibility,
    private readonly stats: OriginStats,
    private readonly onObjectRequest: ((digest: Digest, method: string) => void) | undefined,
  ) {}

  close(): Promise<void> {
    return this.packer.close();
  }

  /** GET or HEAD of one object. */
  async serveObject(req: http.IncomingMessage, res: http.ServerResponse, digest: Digest, method: string, p: Principal): Promise<void> {
    this.stats.objectRequests++;
    this.onObjectRequest?.(digest, method);
    const absent = () => new VmdnError('E_NOT_FOUND', `object ${digest} not at this origin`, { digest });
    // a private image's object is absent to those who may not read it, exactly as a missing one
    if (!(await this.store.has(digest)) || !(await setObjectCacheControl(this.visibility, p, digest, res))) throw absent();
    // a local file streams (large objects never sit in memory whole); other stores hand over bytes
    const n = hasEncodedFiles(this.store)
      ? await serveObjectFile(req, res, digest, this.store.encodedFile(digest)).catch((err) => {
          throw (err as NodeJS.ErrnoException).code === 'ENOENT' ? absent() : err;
        })
      : serveObjectBuffer(req, res, digest, (await this.encoded(digest)) ?? (() => { throw absent(); })());
    this.stats.objectBytesServed += n;
  }

  /** An object's encoded bytes as stored, or undefined if it is not (or no longer) here. */
  async encoded(d: Digest): Promise<Uint8Array | undefined> {
    try {
      // synchronous for the reason serveObjectFile gives
      return hasEncodedFiles(this.store) ? fs.readFileSync(this.store.encodedFile(d)) : await this.store.getEncoded(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err instanceof VmdnError && err.code === 'E_NOT_FOUND')) return undefined;
      throw err;
    }
  }

  /** A window of a batch from a store that reads many at once (EncodedMany); what the principal may not see stays out. */
  private async encodedMany(store: EncodedMany, ds: Digest[], have: Map<Digest, ObjectStat>): Promise<Array<Uint8Array | undefined>> {
    const got = await store.encodedMany(ds.filter((d) => have.has(d)), have);
    let i = 0;
    return ds.map((d) => {
      if (!have.has(d)) return undefined;
      const bytes = got[i++];
      if (bytes) this.onObjectRequest?.(d, 'POST');
      return bytes;
    });
  }

  async batch(req: http.IncomingMessage, res: http.ServerResponse, p: Principal): Promise<void> {
    const digests = await readBatchRequest(req);
    const many = hasEncodedMany(this.store) ? this.store : undefined;
    const have = many ? await many.statPlaced(digests) : await this.store.statMany(digests);
    const seen = await this.visibility.objects(p, have.keys());
    for (const d of have.keys()) if (!seen.has(d)) have.delete(d);
    const sent = await serveBatch(res, digests, async (d) => {
      if (!have.has(d)) return undefined;
      const bytes = await this.encoded(d);
      if (bytes) this.onObjectRequest?.(d, 'POST');
      return bytes;
    }, { budget: this.batchBudget, sizeOf: (d) => have.get(d)?.storedSize }, many ? (ds) => this.encodedMany(many, ds, have) : undefined);
    this.stats.objectRequests += sent.objects;
    this.stats.objectBytesServed += sent.bytes;
  }

  async pack(req: http.IncomingMessage, res: http.ServerResponse, p: Principal): Promise<void> {
    // refused before its body is even parsed: a flood of requests costs next to nothing
    const turn = this.packSlots.take();
    if (!turn) {
      req.resume();
      return sendBusy(res, PACK_RETRY_AFTER, 'packs are busy: retry later, or ask for a batch');
    }
    let r: PackRequest;
    try {
      r = await readPackRequest(req);
    } catch (err) {
      void turn.then((release) => release());
      throw err;
    }
    const release = await turn;
    try {
      // a client that left while waiting for its turn costs nothing more
      if (!res.destroyed && !req.socket.destroyed) await this.servePackNow(r, res, p);
    } finally {
      release();
    }
  }

  private async servePackNow(r: PackRequest, res: http.ServerResponse, p: Principal): Promise<void> {
    const have = await this.store.statMany([...r.digests, ...r.refs]);
    // what the principal may not see is neither sent nor used as a base
    const seen = await this.visibility.objects(p, have.keys());
    for (const d of have.keys()) if (!seen.has(d)) have.delete(d);
    const store = this.store;
    const sent = await servePack(res, r, {
      size: (d) => have.get(d)?.size,
      // local files are read by the pack worker itself; other stores' bytes are handed to it
      source: async (d) => {
        if (hasEncodedFiles(store)) return { digest: d, path: store.encodedFile(d) };
        const encoded = await this.encoded(d);
        return encoded && { digest: d, encoded };
      },
    }, (o, refs) => this.packer.build(o, refs));
    for (const d of sent.sent) this.onObjectRequest?.(d, 'POST');
    this.stats.objectRequests += sent.sent.length;
    this.stats.objectBytesServed += sent.bytes;
  }
}
