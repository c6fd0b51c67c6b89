/**
 * The portal's JSON API (docs/http-api.md, "Portal API"), mounted on an origin
 * by `vmdn serve` (OriginOptions.mount): `handle` answers requests under
 * /v1/portal/ and leaves every other path to the origin (and the pages).
 *
 * It sits above net/ and inspect/ (docs/architecture.md: a top layer beside
 * cli/), reading the origin's store through the same interfaces, with its own
 * SQLite catalog (catalog-db.ts) beside the store.
 */
import type http from 'node:http';
import path from 'node:path';
import { sendError, sendJson } from '../net/wire/http-api.js';
import { CatalogDb } from './catalog-db.js';
import { CatalogSync } from './sync.js';
import { parseCatalogQuery, searchCatalog } from './catalog-search.js';
import { authOf, canSee, type AccessSource, type Auth } from './access.js';
import { getImage, putImage } from './pages.js';
import { diff, file, inside, ls } from './browse.js';
import { shared } from './shared.js';
import { download } from './download.js';
import { Uploads } from './uploads.js';
import type { PortalContext, Request } from './context.js';
import type { ImportStore } from '../images/import.js';
import { VmdnError } from '../errors.js';

export const PORTAL_PREFIX = '/v1/portal/';

type Handler = (ctx: PortalContext, r: Request) => Promise<void>;

export class Portal {
  readonly ctx: PortalContext;
  private readonly uploads = new Uploads();
  private readonly routes: Record<string, Partial<Record<string, Handler>>> = {
    catalog: { GET: async (ctx, r) => {
      await ctx.sync.fresh();
      sendJson(r.res, 200, searchCatalog(ctx.cat, parseCatalogQuery(r.url.searchParams), r.auth));
    } },
    image: { GET: getImage, PUT: putImage },
    inside: { GET: inside },
    ls: { GET: ls },
    file: { GET: file, HEAD: file },
    diff: { GET: diff },
    shared: { GET: shared },
    download: { GET: download, HEAD: download },
    uploads: { POST: (ctx, r) => this.uploads.create(ctx, r) },
  };

  /** `dir`: where the catalog and built downloads live (the store's directory for a local store). */
  constructor(store: ImportStore, dir: string, private readonly access: AccessSource) {
    const cat = new CatalogDb(path.join(dir, 'portal.db'));
    this.ctx = { store, cat, sync: new CatalogSync(cat, store), cacheDir: path.join(dir, 'portal-cache') };
  }

  close(): void {
    this.ctx.cat.close();
  }

  /** Who the request is (access.ts decides what that allows). */
  auth(req: http.IncomingMessage): Promise<Auth> {
    return authOf(req, this.access);
  }

  /** For the origin's own /v1/images answers: may this request see image `name`? */
  async canSeeName(name: string, req: http.IncomingMessage): Promise<boolean> {
    const img = this.ctx.cat.image(name);
    return canSee(name, img && { published: img.published === 1 }, await this.auth(req));
  }

  /** True when the request was the portal's (answered, or answered with an error). */
  async handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<boolean> {
    if (!url.pathname.startsWith(PORTAL_PREFIX)) return false;
    try {
      const r: Request = { req, res, url, auth: await this.auth(req) };
      const rest = url.pathname.slice(PORTAL_PREFIX.length);
      const m = req.method ?? 'GET';
      const job = /^uploads\/([0-9a-f-]{36})$/.exec(rest);
      if (job && m === 'PUT') await this.uploads.put(this.ctx, r, job[1]!);
      else if (job && m === 'GET') this.uploads.get(r, job[1]!);
      else {
        const h = this.routes[rest]?.[m];
        if (!h) throw new VmdnError(this.routes[rest] ? 'E_USAGE' : 'E_NOT_FOUND', `${m} ${url.pathname}: no such portal endpoint`);
        await h(this.ctx, r);
      }
    } catch (err) {
      if (!res.headersSent) req.resume();
      sendError(res, err);
    }
    return true;
  }
}
