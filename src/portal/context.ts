/** What every portal handler shares, and the one way they find a visible image or revision. */
import type http from 'node:http';
import type { ImportStore } from '../images/import.js';
import { parseImageRef, formatImageRef } from '../store/image-name.js';
import { loadManifest } from '../images/names.js';
import type { Manifest } from '../model/manifest.js';
import type { CatalogDb, ImageRow, RevisionRow } from './catalog-db.js';
import type { CatalogSync } from './sync.js';
import { canSee, type Auth } from './access.js';
import { VmdnError } from '../errors.js';

export interface PortalContext {
  store: ImportStore;
  cat: CatalogDb;
  sync: CatalogSync;
  /** Where built downloads (qcow2, vhdx, ...) are kept between requests. */
  cacheDir: string;
}

export interface Request {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  url: URL;
  auth: Auth;
}

const absent = (what: string) => new VmdnError('E_NOT_FOUND', `no image ${what} here`, { image: what });

export function param(url: URL, key: string): string {
  const v = url.searchParams.get(key);
  if (v === null || v === '') throw new VmdnError('E_USAGE', `missing query parameter ${key}`);
  return v;
}

/** An image by name, if this visitor may see it; otherwise (absent or hidden alike) E_NOT_FOUND. */
export async function visibleImage(ctx: PortalContext, name: string, auth: Auth): Promise<ImageRow> {
  await ctx.sync.fresh();
  const img = ctx.cat.image(name);
  if (!img || img.latest_tag === null || !canSee(name, { published: img.published === 1 }, auth)) throw absent(name);
  return img;
}

export interface Revision {
  img: ImageRow;
  rev: RevisionRow;
  ref: string;
  manifest: Manifest;
}

/** NAME:TAG (or NAME: its newest revision), visible to this visitor. */
export async function visibleRevision(ctx: PortalContext, refText: string, auth: Auth): Promise<Revision> {
  let name: string;
  let tag: string | undefined;
  try {
    const hasTag = /:[^/:]+$/.test(refText);
    const r = parseImageRef(refText);
    name = r.name;
    tag = hasTag ? r.tag : undefined;
  } catch {
    throw absent(refText);
  }
  const img = await visibleImage(ctx, name, auth);
  const rev = ctx.cat.revisions(img.id).find((r) => r.tag === (tag ?? img.latest_tag));
  if (!rev) throw absent(refText);
  return { img, rev, ref: formatImageRef({ name, tag: rev.tag }), manifest: await loadManifest(ctx.store, rev.manifest) };
}
