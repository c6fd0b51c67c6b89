/**
 * Looking inside a revision from the portal: what vmdn reads in it (inside),
 * a directory listing (ls), a file's bytes (file), the packages/files diff of
 * two revisions, and what it shares with other images (shared). All reads go
 * through the stored image (objects verified by hash) and the inspect layer;
 * names and contents from the image are data, returned as JSON strings or as
 * the bytes themselves, never interpreted.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseRange, sendJson } from '../net/wire/http-api.js';
import { inspectDisk } from '../inspect/inspect.js';
import { diffImages } from '../inspect/diff.js';
import { resolvePath, resolvePathBytes } from '../os/fs-read.js';
import { decodePath, walkTree } from '../inspect/tree.js';
import { openStored, rootVolume } from './stored.js';
import { param, visibleRevision, type PortalContext, type Request, type Revision } from './context.js';
import { VmdnError } from '../errors.js';

const MAX_LISTING = 10_000;

async function withRoot<T>(ctx: PortalContext, v: Revision, fn: (root: NonNullable<Awaited<ReturnType<typeof rootVolume>>['root']>) => Promise<T>): Promise<T> {
  const disk = await openStored(ctx.store, v.manifest);
  try {
    const { root } = await rootVolume(disk);
    if (!root) throw new VmdnError('E_NOT_FOUND', `${v.ref} holds no filesystem vmdn can read`, { ref: v.ref });
    return await fn(root);
  } finally {
    await disk.close();
  }
}

export async function inside(ctx: PortalContext, r: Request): Promise<void> {
  const v = await visibleRevision(ctx, param(r.url, 'ref'), r.auth);
  const disk = await openStored(ctx.store, v.manifest);
  try {
    const i = await inspectDisk(disk);
    const t = v.rev.tree === null ? undefined : ctx.cat.tree(v.rev.tree);
    sendJson(r.res, 200, {
      ref: v.ref, manifest: v.rev.manifest, virtualSize: i.virtualSize, scheme: i.scheme, partitions: i.partitions, filesystems: i.filesystems,
      os: i.os && { id: i.os.id, versionId: i.os.versionId, prettyName: i.os.prettyName, codename: t?.codename || null, hostname: i.os.hostname, packageManager: i.os.packageManager },
      packages: i.os?.packages ?? [],
    });
  } finally {
    await disk.close();
  }
}

/**
 * The path a request names: `pathB64` (its exact bytes, base64: what a listing
 * gives for names that are not UTF-8) or `path` (text); `bytes` is set for the former.
 */
function pathParam(url: URL, dflt?: string): { path: string; bytes?: Buffer } {
  const b64 = url.searchParams.get('pathB64');
  if (b64 !== null) {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length > 16384) throw new VmdnError('E_USAGE', 'pathB64: base64 of the path bytes');
    const bytes = Buffer.from(b64, 'base64');
    return { ...decodePath(bytes), bytes };
  }
  return { path: dflt !== undefined ? url.searchParams.get('path') || dflt : param(url, 'path') };
}

const resolve = (fs: Parameters<typeof resolvePath>[0], p: { path: string; bytes?: Buffer }) => (p.bytes ? resolvePathBytes(fs, p.bytes) : resolvePath(fs, p.path));

export async function ls(ctx: PortalContext, r: Request): Promise<void> {
  const v = await visibleRevision(ctx, param(r.url, 'ref'), r.auth);
  const at = pathParam(r.url, '/');
  const dir = at.path;
  const entries = await withRoot(ctx, v, async (root) => {
    const node = await resolve(root.fs, at);
    if (node.type !== 'dir') throw new VmdnError('E_USAGE', `${dir}: not a directory`, { path: dir });
    const out = [];
    for await (const e of walkTree(root.fs, at.bytes ?? dir, { xattrs: false, maxEntries: MAX_LISTING })) {
      out.push({
        name: e.path.slice(e.path.lastIndexOf('/') + 1), path: e.path, ...(e.pathB64 ? { pathB64: e.pathB64 } : {}),
        type: ['file', 'dir', 'symlink'].includes(e.type) ? e.type : 'other', size: e.size, mode: e.perm, mtime: e.mtime.sec, ...(e.target !== undefined ? { target: e.target } : {}),
      });
    }
    return out;
  });
  sendJson(r.res, 200, { ref: v.ref, path: dir, ...(at.bytes && decodePath(at.bytes).pathB64 ? { pathB64: at.bytes.toString('base64') } : {}), entries });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
function isText(b: Uint8Array): boolean {
  if (b.includes(0)) return false;
  try {
    // a multi-byte character cut at the end of the sample is still text
    utf8.decode(b.subarray(0, Math.max(0, b.length - 3)));
    return true;
  } catch {
    return false;
  }
}

export async function file(ctx: PortalContext, r: Request): Promise<void> {
  const v = await visibleRevision(ctx, param(r.url, 'ref'), r.auth);
  const at = pathParam(r.url);
  const p = at.path;
  await withRoot(ctx, v, async (root) => {
    const node = await resolve(root.fs, at);
    if (node.type === 'dir') throw new VmdnError('E_USAGE', `${p}: is a directory`, { path: p });
    if (node.type !== 'file') throw new VmdnError('E_USAGE', `${p}: not a regular file (${node.type})`, { path: p });
    const it = root.fs.readFile(node)[Symbol.asyncIterator]();
    const first = await it.next();
    const head = first.done ? new Uint8Array() : first.value;
    const range = parseRange(r.req.headers.range, node.size);
    const name = p.slice(p.lastIndexOf('/') + 1).replace(/[^A-Za-z0-9._-]+/g, '_') || 'file';
    const headers = {
      'content-type': isText(head.subarray(0, 65536)) ? 'text/plain; charset=utf-8' : 'application/octet-stream',
      'x-content-type-options': 'nosniff', 'accept-ranges': 'bytes', 'cache-control': 'no-store',
      // shown as text, never as a page of the portal's origin
      'content-security-policy': "default-src 'none'; sandbox",
      ...(r.url.searchParams.get('download') === '1' ? { 'content-disposition': `attachment; filename="${name}"` } : {}),
    };
    if (range === 'unsatisfiable') return void r.res.writeHead(416, { ...headers, 'content-range': `bytes */${node.size}` }).end();
    const { start, end } = range ?? { start: 0, end: node.size - 1 };
    r.res.writeHead(range ? 206 : 200, { ...headers, 'content-length': Math.max(0, end - start + 1), ...(range ? { 'content-range': `bytes ${start}-${end}/${node.size}` } : {}) });
    if (r.req.method === 'HEAD' || node.size === 0) return void r.res.end();
    await pipeline(Readable.from((async function* () {
      let off = 0;
      for (let b: Uint8Array | undefined = head; b; ) {
        const s = Math.max(start - off, 0), e = Math.min(end + 1 - off, b.length);
        if (e > s) yield b.subarray(s, e);
        off += b.length;
        if (off > end) return;
        const n = await it.next();
        b = n.done ? undefined : n.value;
      }
    })()), r.res).catch(() => {});
  });
}

export async function diff(ctx: PortalContext, r: Request): Promise<void> {
  const layer = r.url.searchParams.get('layer') ?? 'packages';
  if (layer !== 'packages' && layer !== 'files') throw new VmdnError('E_USAGE', 'layer: packages or files');
  const [va, vb] = [await visibleRevision(ctx, param(r.url, 'a'), r.auth), await visibleRevision(ctx, param(r.url, 'b'), r.auth)];
  const [da, db] = [await openStored(ctx.store, va.manifest), await openStored(ctx.store, vb.manifest)];
  try {
    const open = (disk: typeof da, v: Revision) => ({ disk, label: v.ref, source: 'store' as const, manifest: v.manifest, close: async () => {} });
    sendJson(r.res, 200, { a: va.ref, b: vb.ref, ...(await diffImages(open(da, va), open(db, vb), layer)) });
  } finally {
    await da.close();
    await db.close();
  }
}
