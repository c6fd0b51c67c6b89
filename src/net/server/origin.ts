/**
 * The origin: serves a store's images over HTTP (docs/http-api.md) and accepts
 * authenticated uploads. Object bodies stream from disk; uploads are decoded
 * and re-hashed before they are stored, and a name is only given to a
 * manifest whose every object is present.
 */
import http from 'node:http';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { asWriter, hasBootProfiles, hasEncodedFiles, hasEncodedMany, type EncodedMany, type ObjectStat, hasSideRecords, presentIn, type EncodedFiles, type ImageStore, type StoreTotals, type WriterLease } from '../../store/types.js';
import { nameImage } from '../../images/names.js';
import { assertDigest, type Digest } from '../../store/digest.js';
import { formatImageRef } from '../../store/image-name.js';
import { decodeManifest } from '../../model/manifest.js';
import { decodeProfile } from '../../model/profile.js';
import { imageObjects } from '../../model/objects.js';
import { VmdnError } from '../../errors.js';
import {
  closeServer, isDigestList, listen, prometheus, readBody, readJson, route, sendBusy, sendError, sendJson, serveObjectBuffer, serveObjectFile,
} from '../wire/http-api.js';
import { ANONYMOUS, Authenticator, requireUpload, requireWrite, type Principal } from './auth.js';
import type { TokenStore } from './tokens.js';
import { Visibility } from './visibility.js';
import { accessAnswer, refCacheControl, setObjectCacheControl } from './origin-access.js';
import { BATCH_BUDGET, ByteBudget, readBatchRequest, serveBatch } from '../wire/batch.js';
import { PACK_RETRY_AFTER, PackSlots, readPackRequest, servePack, type PackRequest } from '../wire/pack.js';
import { PackBuilder } from './pack-worker.js';
import { servePortal } from './portal-static.js';
import type { RecordSigner } from './record-signer.js';
import { serverOptions } from './limits.js';

/** What an origin serves from: any store with image names; local files and a writer lease are used when it has them. */
export type OriginStore = ImageStore & Partial<EncodedFiles & WriterLease & StoreTotals>;

export interface OriginOptions {
  /** The shared admin token (reads and uploads everywhere); without it or `tokens` the origin is read-only. */
  token?: string;
  /** Scoped tokens (`vmdn token create`), checked against their hashes in the store. */
  tokens?: TokenStore;
  /** Names starting with one of these are private whatever they were pushed with. */
  privatePrefixes?: string[];
  /** Called for every object GET/HEAD and every object sent in a batch (tests count upstream traffic with it). */
  onObjectRequest?: (digest: Digest, method: string) => void;
  /** Signs every image record served (`vmdn serve --sign-key`). */
  signer?: RecordSigner;
  /** How long the store's writer lease outlives the last upload request, ms (default 120 s). */
  uploadLeaseMs?: number;
  /** Serve the portal's pages under / (portal-static.ts); `vmdn serve --no-portal` turns them off. */
  portal?: boolean;
  /**
   * Requests a layer above answers first (the portal, src/portal/): true when
   * it took the request. The origin cannot import what sits above net/, so
   * `vmdn serve` hands it in.
   */
  mount?: (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<boolean>;
  /** Whether this request may see image `name` in /v1/images (the portal's unpublished images are hidden); default: all. */
  canSeeName?: (name: string, req: http.IncomingMessage) => Promise<boolean>;
}

export interface OriginStats {
  requests: number;
  objectRequests: number;
  objectBytesServed: number;
  objectsUploaded: number;
  bytesUploaded: number;
  authFailures: number;
}

/**
 * An uploaded object named as a manifest (or a tree) that does not decode as
 * one is the uploader's error (400), not a damaged store (E_MANIFEST, 500).
 */
function uploaderFault(err: unknown): never {
  if (err instanceof VmdnError && err.code === 'E_MANIFEST') throw new VmdnError('E_USAGE', `${err.message}: not a valid manifest`, err.data, { cause: err });
  throw err;
}

export class Origin<S extends OriginStore = OriginStore> {
  readonly server: http.Server;
  readonly stats: OriginStats = { requests: 0, objectRequests: 0, objectBytesServed: 0, objectsUploaded: 0, bytesUploaded: 0, authFailures: 0 };
  url = '';
  private readonly packer = new PackBuilder();
  // unauthenticated work is bounded however many requests arrive (pack.ts, batch.ts)
  private readonly packSlots = new PackSlots();
  private readonly batchBudget = new ByteBudget(BATCH_BUDGET);
  /**
   * A push is several requests (ask what is missing, upload, name the
   * manifest): the store's writer lease is taken by the first and kept until
   * no upload request came for uploadLeaseMs, so a gc on this store waits
   * instead of deleting what a push was told is present or has just sent.
   */
  private lastUpload = 0;
  private linger: Promise<void> | undefined;
  private readonly closing = new AbortController();
  readonly authn: Authenticator;
  readonly visibility: Visibility;

  constructor(readonly store: S, private readonly opts: OriginOptions = {}) {
    this.authn = new Authenticator({ adminToken: opts.token, tokens: opts.tokens });
    this.visibility = new Visibility(store, hasSideRecords(store) ? store : undefined, opts.privatePrefixes);
    this.server = http.createServer(serverOptions(), (req, res) => {
      this.handle(req, res).catch((err) => sendError(res, err));
    });
  }

  async listen(host = '127.0.0.1', port = 0): Promise<string> {
    this.url = await listen(this.server, host, port);
    return this.url;
  }

  async close(): Promise<void> {
    this.closing.abort();
    await this.linger;
    await closeServer(this.server);
    await this.packer.close();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.stats.requests++;
    const url = new URL(req.url ?? '/', 'http://x');
    if (this.opts.mount && (await this.opts.mount(req, res, url))) return;
    const r = route(url.pathname);
    const m = req.method ?? 'GET';
    const read = m === 'GET' || m === 'HEAD';
    if (!r && this.opts.portal && !url.pathname.startsWith('/v1/') && servePortal(req, res, url.pathname)) return;
    if (!r) throw new VmdnError('E_NOT_FOUND', `no such endpoint ${url.pathname}`);
    const p = r.kind === 'health' || r.kind === 'metrics' ? ANONYMOUS : await this.principal(req);
    if (r.kind === 'object' && read) {
      this.stats.objectRequests++;
      this.opts.onObjectRequest?.(r.digest, m);
      const absent = () => new VmdnError('E_NOT_FOUND', `object ${r.digest} not at this origin`, { digest: r.digest });
      // a private image's object is absent to those who may not read it, exactly as a missing one
      if (!(await this.store.has(r.digest)) || !(await setObjectCacheControl(this.visibility, p, r.digest, res))) throw absent();
      // a local file streams (large objects never sit in memory whole); other stores hand over bytes
      const n = hasEncodedFiles(this.store)
        ? await serveObjectFile(req, res, r.digest, this.store.encodedFile(r.digest)).catch((err) => {
            throw (err as NodeJS.ErrnoException).code === 'ENOENT' ? absent() : err;
          })
        : serveObjectBuffer(req, res, r.digest, (await this.encoded(r.digest)) ?? (() => { throw absent(); })());
      this.stats.objectBytesServed += n;
      return;
    }
    if (r.kind === 'object' && m === 'PUT') return this.putObject(req, res, r.digest, p);
    if (r.kind === 'batch' && m === 'POST') return this.batch(req, res, p);
    if (r.kind === 'pack' && m === 'POST') return this.pack(req, res, p);
    if (r.kind === 'images' && read) {
      // the portal hides unpublished images (canSeeName); private names need read scope (visibility)
      const see = this.opts.canSeeName;
      const visible = (await this.visibility.visibleImages(p)).map((i) => ({ ref: `${i.name}:${i.tag}`, ...i }));
      const images = see ? (await Promise.all(visible.map(async (i) => ((await see(i.name, req)) ? [i] : [])))).flat() : visible;
      return sendJson(res, 200, { images }, refCacheControl(p));
    }
    if (r.kind === 'access') return accessAnswer(req, res, this.visibility, p);
    if (r.kind === 'ref' && read) {
      const seeName = !this.opts.canSeeName || (await this.opts.canSeeName(r.ref.name, req));
      const row = seeName && (await this.visibility.canSee(p, r.ref.name)) ? await this.store.names.get(r.ref.name, r.ref.tag) : undefined;
      if (!row) throw new VmdnError('E_NOT_FOUND', `no image ${formatImageRef(r.ref)} at this origin`, { ref: formatImageRef(r.ref) });
      // with a signing key, the record and its signature ride along (docs/http-api.md, Signed image records)
      const signed = await this.opts.signer?.sign(row);
      return sendJson(res, 200, { ref: formatImageRef(r.ref), manifest: row.manifest, virtualSize: row.virtualSize, dataSize: row.dataSize, ...signed }, refCacheControl(p));
    }
    if (r.kind === 'ref' && m === 'PUT') return this.putImage(req, res, r.ref, p);
    if (r.kind === 'profile' && read) {
      const seen = (await this.visibility.objects(p, [r.manifest])).has(r.manifest);
      const profile = seen && hasBootProfiles(this.store) ? await this.store.getProfile(r.manifest) : undefined;
      if (!profile) throw new VmdnError('E_NOT_FOUND', `no boot profile for manifest ${r.manifest.slice(0, 12)} at this origin`, { manifest: r.manifest });
      return sendJson(res, 200, { manifest: r.manifest, profile }, refCacheControl(p));
    }
    if (r.kind === 'profile' && m === 'PUT') return this.putProfile(req, res, r.manifest, p);
    if (r.kind === 'missing' && m === 'POST') {
      this.auth(req, () => requireUpload(p));
      const body = await readJson<{ digests?: unknown }>(req, 16 << 20);
      if (!isDigestList(body.digests)) throw new VmdnError('E_USAGE', 'body must be {"digests": [up to 100000 digests]}');
      const digests = body.digests;
      // under the lease: what is present now stays until the push names its manifest
      const have = await this.uploading(() => presentIn(this.store, digests));
      return sendJson(res, 200, { missing: digests.filter((d) => !have.has(d)) });
    }
    if (r.kind === 'stats' && read) return sendJson(res, 200, { role: 'origin', ...this.stats, ...(await this.store.totals?.()) });
    if (r.kind === 'metrics' && read) {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'cache-control': 'no-store' });
      res.end(prometheus('vmdn_origin', { requestsTotal: this.stats.requests, objectRequestsTotal: this.stats.objectRequests, bytesServedTotal: this.stats.objectBytesServed, objectsUploadedTotal: this.stats.objectsUploaded }));
      return;
    }
    if (r.kind === 'health' && read) return sendJson(res, 200, { ok: true });
    throw new VmdnError('E_USAGE', `${m} not allowed on ${url.pathname}`);
  }

  /** An object's encoded bytes as stored, or undefined if it is not (or no longer) here. */
  private async encoded(d: Digest): Promise<Uint8Array | undefined> {
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
      if (bytes) this.opts.onObjectRequest?.(d, 'POST');
      return bytes;
    });
  }

  private async batch(req: http.IncomingMessage, res: http.ServerResponse, p: Principal): Promise<void> {
    const digests = await readBatchRequest(req);
    const many = hasEncodedMany(this.store) ? this.store : undefined;
    const have = many ? await many.statPlaced(digests) : await this.store.statMany(digests);
    const seen = await this.visibility.objects(p, have.keys());
    for (const d of have.keys()) if (!seen.has(d)) have.delete(d);
    const sent = await serveBatch(res, digests, async (d) => {
      if (!have.has(d)) return undefined;
      const bytes = await this.encoded(d);
      if (bytes) this.opts.onObjectRequest?.(d, 'POST');
      return bytes;
    }, { budget: this.batchBudget, sizeOf: (d) => have.get(d)?.storedSize }, many ? (ds) => this.encodedMany(many, ds, have) : undefined);
    this.stats.objectRequests += sent.objects;
    this.stats.objectBytesServed += sent.bytes;
  }

  private async pack(req: http.IncomingMessage, res: http.ServerResponse, p: Principal): Promise<void> {
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
    for (const d of sent.sent) this.opts.onObjectRequest?.(d, 'POST');
    this.stats.objectRequests += sent.sent.length;
    this.stats.objectBytesServed += sent.bytes;
  }

  /** Run an authorised upload request under the store's writer lease (see `linger`). */
  private uploading<T>(fn: () => Promise<T>): Promise<T> {
    return asWriter(this.store, async () => {
      try {
        return await fn();
      } finally {
        this.lastUpload = Date.now();
        if (!this.linger && !this.closing.signal.aborted) this.linger = asWriter(this.store, () => this.idle()).finally(() => (this.linger = undefined));
      }
    }, this.closing.signal);
  }

  private async idle(): Promise<void> {
    const ms = this.opts.uploadLeaseMs ?? 120_000;
    for (let left = ms; left > 0 && !this.closing.signal.aborted; left = this.lastUpload + ms - Date.now()) {
      await sleep(left, undefined, { signal: this.closing.signal }).catch(() => {});
    }
  }

  /** Who asks; a token that is not valid is refused (401) even where none is needed. */
  private async principal(req: http.IncomingMessage): Promise<Principal> {
    try {
      return await this.authn.authenticate(req);
    } catch (err) {
      this.stats.authFailures++;
      req.resume();
      throw err;
    }
  }

  /** Run a scope check for an upload; a refusal drains the request. */
  private auth(req: http.IncomingMessage, check: () => void): void {
    try {
      check();
    } catch (err) {
      this.stats.authFailures++;
      // drain the upload so the client sees the 401 rather than a reset
      req.resume();
      throw err;
    }
  }

  private async putObject(req: http.IncomingMessage, res: http.ServerResponse, digest: Digest, p: Principal): Promise<void> {
    this.auth(req, () => requireUpload(p));
    const body = await readBody(req);
    // putEncoded decodes and re-hashes: a wrong or damaged upload is refused (E_CORRUPT_OBJECT)
    const r = await this.uploading(() => this.store.putEncoded(digest, body)).catch((err) => {
      throw err instanceof VmdnError && err.code === 'E_CORRUPT_OBJECT' ? new VmdnError('E_USAGE', `upload of ${digest.slice(0, 12)} does not match its digest`, { digest }) : err;
    });
    // the store's index writes object rows behind (sqlite-index.ts); another `vmdn serve` on this store
    // (an origin group, docs/http-api.md) may get this push's next request and must see the object now
    (this.store as { index?: { flush?: () => void } }).index?.flush?.();
    if (r.added) {
      this.stats.objectsUploaded++;
      this.stats.bytesUploaded += body.length;
    }
    sendJson(res, r.added ? 201 : 200, r);
  }

  private async putImage(req: http.IncomingMessage, res: http.ServerResponse, ref: { name: string; tag: string }, p: Principal): Promise<void> {
    this.auth(req, () => requireWrite(p, ref.name));
    const body = await readJson<{ manifest?: unknown; private?: unknown }>(req, 4096);
    const digest = assertDigest(body.manifest, 'manifest digest');
    if (body.private !== undefined && typeof body.private !== 'boolean') throw new VmdnError('E_USAGE', '"private" must be true or false');
    // private before the name exists, public only after: the image is never visible to those it is hidden from
    if (body.private === true) await this.visibility.setPrivate(ref.name, true);
    // the checks and the naming under one lease: gc cannot delete between them
    await this.uploading(() => this.nameImage(ref, digest)).catch(uploaderFault);
    this.visibility.changed();
    if (body.private === false) await this.visibility.setPrivate(ref.name, false);
    sendJson(res, 201, { ref: formatImageRef(ref), manifest: digest, private: await this.visibility.isPrivate(ref.name) });
  }

  /** Point a manifest at its boot profile: both objects uploaded before, the profile checked against the manifest. */
  private async putProfile(req: http.IncomingMessage, res: http.ServerResponse, manifestDigest: Digest, p: Principal): Promise<void> {
    this.auth(req, () => requireUpload(p));
    const body = await readJson<{ profile?: unknown }>(req, 4096);
    const profile = assertDigest(body.profile, 'profile digest');
    const store = this.store;
    if (!hasBootProfiles(store)) throw new VmdnError('E_UNSUPPORTED', 'this origin\'s store keeps no boot profiles');
    await this.uploading(async () => {
      for (const d of [manifestDigest, profile]) {
        if (!(await store.has(d))) throw new VmdnError('E_INCOMPLETE', `object ${d.slice(0, 12)} not uploaded`, { digest: d });
      }
      const manifest = await Promise.resolve(store.get(manifestDigest)).then((b) => decodeManifest(b, `upload ${manifestDigest.slice(0, 12)}`)).catch(uploaderFault);
      // a profile clients would refuse is refused here already (E_MANIFEST, 500 -> a usage error for the uploader)
      try {
        decodeProfile(await store.get(profile), `upload ${profile.slice(0, 12)}`, { manifest: manifestDigest, chunks: new Set(manifest.chunks.map((c) => c[2])) });
      } catch (err) {
        throw new VmdnError('E_USAGE', (err as Error).message, { profile });
      }
      await store.setProfile(manifestDigest, profile);
    });
    sendJson(res, 201, { manifest: manifestDigest, profile });
  }

  private async nameImage(ref: { name: string; tag: string }, digest: Digest): Promise<void> {
    if (!(await this.store.has(digest))) throw new VmdnError('E_INCOMPLETE', `manifest ${digest.slice(0, 12)} not uploaded`, { digest });
    const manifest = decodeManifest(await this.store.get(digest), `upload ${digest.slice(0, 12)}`);
    const lacking = async (ds: Iterable<Digest>) => {
      const have = await presentIn(this.store, ds);
      return [...ds].filter((d) => !have.has(d));
    };
    // file trees first: the objects they reference are only known once they are here
    let missing = await lacking((manifest.filesystems ?? []).flatMap((f) => [...f.tree, ...f.times]));
    const chunks = missing.length ? new Set<Digest>() : await imageObjects(manifest, this.store);
    if (!missing.length) missing = await lacking(chunks);
    if (missing.length) throw new VmdnError('E_INCOMPLETE', `manifest references ${missing.length} objects not uploaded`, { missing: missing.slice(0, 10) });
    await nameImage(this.store, ref, digest, manifest, chunks);
  }
}
