/** The image page's data (GET /v1/portal/image) and the publisher's metadata edit (PUT). */
import { sendJson, readJson } from '../net/wire/http-api.js';
import { OUTPUT_FORMATS } from '../container/writers.js';
import { EMPTY_META, parseMeta, type ImageRow, type Metadata } from './catalog-db.js';
import { param, visibleImage, type PortalContext, type Request } from './context.js';
import { requireWrite } from './access.js';
import { DETERMINISTIC, downloadPath } from './download.js';
import { VmdnError } from '../errors.js';

/** A field may be long (an abstract, a BibTeX entry) but not unbounded. */
const MAX_FIELD = 256 * 1024;
const MAX_BODY = 1 << 20;

function origin(r: Request): string {
  const host = String(r.req.headers.host ?? 'localhost');
  return `http://${host}`;
}

export function imagePage(ctx: PortalContext, r: Request, img: ImageRow): unknown {
  const revisions = ctx.cat.revisions(img.id);
  const base = origin(r);
  const ref = `${img.name}:${img.latest_tag}`;
  return {
    name: img.name,
    metadata: parseMeta(img.meta),
    published: img.published === 1,
    revisions: revisions.map((v) => ({ tag: v.tag, manifest: v.manifest, created: v.created, virtualSize: v.virtual_size, dataSize: v.data_size, strategy: v.strategy, downloads: v.downloads })),
    downloads: img.downloads,
    formats: OUTPUT_FORMATS.map((f) => ({ format: f, deterministic: DETERMINISTIC.has(f), url: `${base}${downloadPath(ref, f)}` })),
    commands: {
      pull: `vmdn pull ${base} ${ref} ${img.name.split('/').pop()}.qcow2`,
      export: `curl -fLo ${img.name.split('/').pop()}.raw -C - '${base}${downloadPath(ref, 'raw')}'`,
      nbd: `vmdn nbd --from ${base} --listen 127.0.0.1:10809 ${ref}`,
      boot: `vmdn boot --from ${base} ${ref}`,
    },
  };
}

export async function getImage(ctx: PortalContext, r: Request): Promise<void> {
  const img = await visibleImage(ctx, param(r.url, 'name'), r.auth);
  sendJson(r.res, 200, imagePage(ctx, r, img));
}

function str(v: unknown, key: string): string {
  if (typeof v !== 'string') throw new VmdnError('E_USAGE', `${key}: a string`);
  if (v.length > MAX_FIELD) throw new VmdnError('E_USAGE', `${key}: at most ${MAX_FIELD} characters`);
  return v;
}

/** Only the given fields change; each is checked for type and size, and kept as the text it is. */
export function mergeMeta(old: Metadata, body: Record<string, unknown>): Metadata {
  const m = { ...EMPTY_META, ...old };
  for (const k of ['title', 'description', 'citation', 'doi', 'license'] as const) if (k in body) m[k] = str(body[k], k);
  if ('authors' in body) {
    if (!Array.isArray(body.authors) || body.authors.length > 1000) throw new VmdnError('E_USAGE', 'authors: a list of strings (at most 1000)');
    m.authors = body.authors.map((a, i) => str(a, `authors[${i}]`));
  }
  if ('links' in body) {
    if (!Array.isArray(body.links) || body.links.length > 100) throw new VmdnError('E_USAGE', 'links: a list of {label, url} (at most 100)');
    m.links = body.links.map((l: unknown, i) => {
      const o = (l ?? {}) as Record<string, unknown>;
      const url = str(o.url, `links[${i}].url`);
      // only web links: a javascript: or data: URL in a page would be code, not a link
      if (!/^https?:\/\//i.test(url)) throw new VmdnError('E_USAGE', `links[${i}].url: an http(s) URL`);
      return { label: str(o.label ?? url, `links[${i}].label`), url };
    });
  }
  return m;
}

export async function putImage(ctx: PortalContext, r: Request): Promise<void> {
  const name = param(r.url, 'name');
  requireWrite(name, r.auth);
  const body = await readJson<unknown>(r.req, MAX_BODY);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new VmdnError('E_USAGE', 'body must be a JSON object of metadata fields');
  const b = body as Record<string, unknown>;
  if ('published' in b && typeof b.published !== 'boolean') throw new VmdnError('E_USAGE', 'published: true or false');
  const img = await visibleImage(ctx, name, r.auth);
  const meta = mergeMeta(parseMeta(img.meta), b);
  ctx.cat.setMeta(img.id, meta, 'published' in b ? (b.published as boolean) : img.published === 1);
  sendJson(r.res, 200, imagePage(ctx, r, ctx.cat.image(name)!));
}
