/**
 * The origin: serves a store's images over HTTP (docs/http-api.md) and accepts
 * authenticated uploads. This file routes each request to its handler:
 * objects, batches and packs (origin-objects.ts), uploads (origin-uploads.ts),
 * names, profiles, stats and health here.
 */
import http from 'node:http';
import { hasBootProfiles, hasSideRecords } from '../../store/types.js';
import type { Digest } from '../../store/digest.js';
import { formatImageRef } from '../../store/image-name.js';
import { VmdnError } from '../../errors.js';
import { closeServer, listen, prometheus, route, sendError, sendJson } from '../wire/http-api.js';
import { ANONYMOUS, Authenticator, type Principal } from './auth.js';
import type { TokenStore } from './tokens.js';
import { Visibility } from './visibility.js';
import { accessAnswer, refCacheControl } from './origin-access.js';
import { servePortal } from './portal-static.js';
import type { RecordSigner } from './record-signer.js';
import { serverOptions } from './limits.js';
import { OriginObjects } from './origin-objects.js';
import { OriginUploads } from './origin-uploads.js';
import type { OriginStats, OriginStore } from './origin-types.js';

export type { OriginStats, OriginStore };

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

export class Origin<S extends OriginStore = OriginStore> {
  readonly server: http.Server;
  readonly stats: OriginStats = { requests: 0, objectRequests: 0, objectBytesServed: 0, objectsUploaded: 0, bytesUploaded: 0, authFailures: 0 };
  url = '';
  readonly authn: Authenticator;
  readonly visibility: Visibility;
  private readonly objects: OriginObjects;
  private readonly uploads: OriginUploads;

  constructor(readonly store: S, private readonly opts: OriginOptions = {}) {
    this.authn = new Authenticator({ adminToken: opts.token, tokens: opts.tokens });
    this.visibility = new Visibility(store, hasSideRecords(store) ? store : undefined, opts.privatePrefixes);
    this.objects = new OriginObjects(store, this.visibility, this.stats, opts.onObjectRequest);
    this.uploads = new OriginUploads(store, this.visibility, this.stats, opts.uploadLeaseMs ?? 120_000);
    this.server = http.createServer(serverOptions(), (req, res) => {
      this.handle(req, res).catch((err) => sendError(res, err));
    });
  }

  async listen(host = '127.0.0.1', port = 0): Promise<string> {
    this.url = await listen(this.server, host, port);
    return this.url;
  }

  async close(): Promise<void> {
    await this.uploads.close();
    await closeServer(this.server);
    await this.objects.close();
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
    if (r.kind === 'object' && read) return this.objects.serveObject(req, res, r.digest, m, p);
    if (r.kind === 'object' && m === 'PUT') return this.uploads.putObject(req, res, r.digest, p);
    if (r.kind === 'batch' && m === 'POST') return this.objects.batch(req, res, p);
    if (r.kind === 'pack' && m === 'POST') return this.objects.pack(req, res, p);
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
    if (r.kind === 'ref' && m === 'PUT') return this.uploads.putImage(req, res, r.ref, p);
    if (r.kind === 'profile' && read) {
      const seen = (await this.visibility.objects(p, [r.manifest])).has(r.manifest);
      const profile = seen && hasBootProfiles(this.store) ? await this.store.getProfile(r.manifest) : undefined;
      if (!profile) throw new VmdnError('E_NOT_FOUND', `no boot profile for manifest ${r.manifest.slice(0, 12)} at this origin`, { manifest: r.manifest });
      return sendJson(res, 200, { manifest: r.manifest, profile }, refCacheControl(p));
    }
    if (r.kind === 'profile' && m === 'PUT') return this.uploads.putProfile(req, res, r.manifest, p);
    if (r.kind === 'missing' && m === 'POST') return this.uploads.missing(req, res, p);
    if (r.kind === 'stats' && read) return sendJson(res, 200, { role: 'origin', ...this.stats, ...(await this.store.totals?.()) });
    if (r.kind === 'metrics' && read) {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'cache-control': 'no-store' });
      res.end(prometheus('vmdn_origin', { requestsTotal: this.stats.requests, objectRequestsTotal: this.stats.objectRequests, bytesServedTotal: this.stats.objectBytesServed, objectsUploadedTotal: this.stats.objectsUploaded }));
      return;
    }
    if (r.kind === 'health' && read) return sendJson(res, 200, { ok: true });
    throw new VmdnError('E_USAGE', `${m} not allowed on ${url.pathname}`);
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
}
