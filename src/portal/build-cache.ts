/**
 * Built downloads in portal-cache/, one file per (manifest, format), built at
 * most once at a time whoever asks. A STREAMABLE format (raw, vhd-fixed,
 * vmdk) can also be built while a response follows it: the writer's bytes go
 * to a temp file and, as they are made, to the client, so the download starts
 * at once and the cache is filled by the same build (identical bytes, so a
 * later Range of it resumes the streamed copy). A client that goes away stops
 * being fed, the build still completes into the cache.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { Writable } from 'node:stream';
import type http from 'node:http';
import { openStreamWriter, openWriter, type OutputFormat } from '../container/writers.js';
import { writeImage } from '../images/export.js';
import { drained } from '../util/drain.js';
import type { PortalContext, Revision } from './context.js';

const building = new Map<string, Promise<string>>();

export const cacheFile = (ctx: PortalContext, v: Revision, format: OutputFormat) => path.join(ctx.cacheDir, `${v.rev.manifest}.${format}`);

/** True when neither the built file nor a build of it exists yet. */
export const notStarted = (file: string) => !building.has(file) && !fs.existsSync(file);

function once_(file: string, build: () => Promise<void>): Promise<string> {
  let p = building.get(file);
  if (!p) {
    p = build().then(() => file).finally(() => building.delete(file));
    building.set(file, p);
  }
  return p;
}

/** The built file of (manifest, format), built once even when several requests ask at the same time. */
export function built(ctx: PortalContext, v: Revision, format: OutputFormat): Promise<string> {
  const file = cacheFile(ctx, v, format);
  if (fs.existsSync(file)) return Promise.resolve(file);
  return once_(file, async () => {
    fs.mkdirSync(ctx.cacheDir, { recursive: true });
    const writer = await openWriter(file, v.manifest.virtualSize, format);
    await writeImage(v.manifest, ctx.store, writer, { workDir: ctx.cacheDir });
  });
}

/** Writes each chunk to the file, then hands it to `res` (waiting while it is full) until `res` closes. */
class Tee extends Writable {
  constructor(private readonly fd: number, private readonly res: http.ServerResponse) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    fs.write(this.fd, chunk, 0, chunk.length, null, (err) => {
      if (err) return cb(err);
      if (this.res.destroyed || this.res.write(chunk)) return cb();
      drained(this.res).then(() => cb());
    });
  }
}

/**
 * Build `format` (STREAMABLE) into the cache while `res` (headers already
 * written) receives the same bytes; `mtimeMs` becomes the built file's mtime
 * (whole seconds), so an ETag naming it holds for the streamed copy and the
 * file alike. Resolves true when `res` got every byte; a failed build
 * destroys `res`, so the client sees a cut transfer, never a short "success".
 */
export async function streamBuild(ctx: PortalContext, v: Revision, format: OutputFormat, res: http.ServerResponse, mtimeMs: number): Promise<boolean> {
  const file = cacheFile(ctx, v, format);
  if (!notStarted(file)) throw new Error(`internal: ${file} is already built or being built`);
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  try {
    await once_(file, async () => {
      fs.mkdirSync(ctx.cacheDir, { recursive: true });
      const fd = fs.openSync(tmp, 'wx');
      try {
        const tee = new Tee(fd, res);
        const writer = await openStreamWriter(tee, v.manifest.virtualSize, format, 'disk.vmdk');
        await writeImage(v.manifest, ctx.store, writer, { workDir: ctx.cacheDir });
        await new Promise<void>((resolve, reject) => tee.end((err?: Error | null) => (err ? reject(err) : resolve())));
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.utimesSync(tmp, mtimeMs / 1000, mtimeMs / 1000);
      fs.renameSync(tmp, file);
    });
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    res.destroy(err as Error);
    return false;
  }
  if (res.destroyed) return false;
  await new Promise<void>((resolve) => res.end(resolve));
  return res.writableFinished;
}
