/**
 * Downloads of a revision in every output format (docs/http-api.md, "Portal API").
 *
 * raw of a chunks image is read from the stored chunks as the client asks
 * (each verified by hash), so it starts at once, has a Content-Length (the
 * virtual size) and resumes from any Range: the bytes of a revision never
 * change. Every other format, and raw of a files/packages image (whose file
 * systems are rebuilt by export), is written once by the same writers as
 * `vmdn export` into a cache file keyed by manifest and format, then served
 * from it with Content-Length and Range too. The first plain GET of a format
 * that can be written front to back (STREAMABLE: raw, vhd-fixed, vmdk) does
 * not wait for that: it receives the bytes as the build makes them
 * (build-cache.ts), with a Content-Length where the size is known up front.
 * DETERMINISTIC lists the formats whose bytes are the same on every build, so
 * a resume survives a rebuilt cache.
 */
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type http from 'node:http';
import { OUTPUT_FORMATS, STREAMABLE, streamedSize, type OutputFormat } from '../container/writers.js';
import { built, cacheFile, notStarted, streamBuild } from './build-cache.js';
import { parseRange } from '../net/wire/http-api.js';
import { openStored, strategyName } from './stored.js';
import { param, visibleRevision, type PortalContext, type Request, type Revision } from './context.js';
import { VmdnError } from '../errors.js';

/**
 * Formats whose writer output depends only on the image: two exports compared
 * byte for byte (2026-12-07). VHD, VHDX, VDI and VMDK carry timestamps or
 * random ids, so their ETag also names the cache file's build time: a resume
 * (If-Range) against a rebuilt file starts over instead of mixing two builds.
 */
export const DETERMINISTIC = new Set<OutputFormat>(['raw', 'qcow2']);
const EXTENSION: Record<OutputFormat, string> = { raw: 'raw', qcow2: 'qcow2', vmdk: 'vmdk', 'vmdk-sparse': 'vmdk', vhd: 'vhd', 'vhd-fixed': 'vhd', vhdx: 'vhdx', vdi: 'vdi' };
const READ = 4 << 20;

export const downloadPath = (ref: string, format: OutputFormat) => `/v1/portal/download?ref=${encodeURIComponent(ref)}&format=${format}`;

const baseHeaders = (etag: string, filename: string): http.OutgoingHttpHeaders => ({
  'content-type': 'application/octet-stream', etag, 'accept-ranges': 'bytes', 'cache-control': 'no-store',
  'content-disposition': `attachment; filename="${filename}"`,
});

/** Status line and headers for a body of `size` bytes; the range to send, or null when nothing follows. */
function head(r: Request, size: number, etag: string, filename: string): { start: number; end: number } | null {
  const headers = baseHeaders(etag, filename);
  const ifRange = r.req.headers['if-range'];
  const range = ifRange && ifRange !== etag ? null : parseRange(r.req.headers.range, size);
  if (range === 'unsatisfiable') {
    r.res.writeHead(416, { ...headers, 'content-range': `bytes */${size}` }).end();
    return null;
  }
  if (range) r.res.writeHead(206, { ...headers, 'content-length': range.end - range.start + 1, 'content-range': `bytes ${range.start}-${range.end}/${size}` });
  else r.res.writeHead(200, { ...headers, 'content-length': size });
  if (r.req.method === 'HEAD' || size === 0) {
    r.res.end();
    return null;
  }
  return range ?? { start: 0, end: size - 1 };
}

export async function download(ctx: PortalContext, r: Request): Promise<void> {
  const format = (r.url.searchParams.get('format') ?? 'raw') as OutputFormat;
  if (!OUTPUT_FORMATS.includes(format)) throw new VmdnError('E_USAGE', `format: one of ${OUTPUT_FORMATS.join(', ')}`, { format });
  const v = await visibleRevision(ctx, param(r.url, 'ref'), r.auth);
  let etag = `"${v.rev.manifest}.${format}"`;
  const filename = `${v.ref.replace(/[^A-Za-z0-9._-]+/g, '_')}.${EXTENSION[format]}`;
  let range: { start: number; end: number } | null;
  let size: number;
  let body: Readable;
  if (format === 'raw' && strategyName(v.manifest) === 'chunks') {
    size = v.manifest.virtualSize;
    range = head(r, size, etag, filename);
    if (!range) return;
    const disk = await openStored(ctx.store, v.manifest);
    const { start, end } = range;
    body = Readable.from((async function* () {
      try {
        for (let off = start; off <= end; off += READ) yield await disk.read(off, Math.min(READ, end + 1 - off));
      } finally {
        await disk.close();
      }
    })());
  } else if (STREAMABLE.includes(format) && r.req.method === 'GET' && !r.req.headers.range && notStarted(cacheFile(ctx, v, format))) {
    // the first plain GET of a streamable format: sent while it is built (build-cache.ts); whole seconds, as the file's mtime will be
    const mtimeMs = Math.floor(Date.now() / 1000) * 1000;
    if (!DETERMINISTIC.has(format)) etag = `"${v.rev.manifest}.${format}.${mtimeMs}"`;
    const length = streamedSize(v.manifest.virtualSize, format);
    r.res.writeHead(200, { ...baseHeaders(etag, filename), ...(length === undefined ? {} : { 'content-length': length }) });
    r.res.flushHeaders();
    if (await streamBuild(ctx, v, format, r.res, mtimeMs)) ctx.cat.countDownload(v.img.id, v.rev.tag);
    return;
  } else {
    const file = await built(ctx, v, format);
    const st = fs.statSync(file);
    size = st.size;
    if (!DETERMINISTIC.has(format)) etag = `"${v.rev.manifest}.${format}.${Math.floor(st.mtimeMs)}"`;
    range = head(r, size, etag, filename);
    if (!range) return;
    body = fs.createReadStream(file, { start: range.start, end: range.end });
  }
  // pipeline tears the body down if the client goes away; a download that reached the last byte counts once
  await pipeline(body, r.res).catch(() => {});
  if (range.end === size - 1 && r.res.writableFinished) ctx.cat.countDownload(v.img.id, v.rev.tag);
}
