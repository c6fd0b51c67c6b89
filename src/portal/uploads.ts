/**
 * Publishing through the portal: POST creates an upload job for NAME:TAG, PUT
 * streams the image file into the store's tmp dir (bytes received counted as
 * they arrive), then imports it as `vmdn import --strategy auto` would (chunks,
 * bit-exact) with its progress counted too; GET reports the job, so a page or
 * script can show progress while the PUT is running. The image's catalog
 * entry is created unpublished before the store names it: it stays invisible
 * until the publisher sets `published` (PUT /v1/portal/image).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { readJson, sendJson } from '../net/wire/http-api.js';
import { importImageFile } from '../images/import.js';
import { parseChunkerSpec } from '../strategy/chunker.js';
import { DEFAULT_CHUNKER_SPEC } from '../strategy/defaults.js';
import { parseImageRef, formatImageRef } from '../store/image-name.js';
import { requireUploader, requireWrite } from './access.js';
import type { PortalContext, Request } from './context.js';
import { VmdnError, asVmdnError } from '../errors.js';

export interface Job {
  job: string;
  name: string;
  tag: string;
  state: 'waiting' | 'receiving' | 'importing' | 'done' | 'failed';
  bytesExpected: number | null;
  bytesReceived: number;
  bytesImported: number;
  totalBytes: number;
  ref?: string;
  manifest?: string;
  strategy?: string;
  error?: { code: string; message: string };
}

/** Jobs are kept in memory for this long after they end (a restart forgets them; the image, once named, stays). */
const KEEP_MS = 3600_000;
const MAX_JOBS = 1000;

export class Uploads {
  private readonly jobs = new Map<string, Job>();

  async create(ctx: PortalContext, r: Request): Promise<void> {
    const body = await readJson<{ name?: unknown; tag?: unknown; strategy?: unknown }>(r.req, 4096);
    const ref = parseImageRef(`${String(body.name ?? '')}:${String(body.tag ?? 'latest')}`);
    requireWrite(ref.name, r.auth);
    if (body.strategy !== undefined && body.strategy !== 'auto') throw new VmdnError('E_USAGE', 'strategy: auto (the default) is the only one the portal offers');
    for (const [id, j] of this.jobs) if (this.jobs.size >= MAX_JOBS && j.state !== 'receiving' && j.state !== 'importing') this.jobs.delete(id);
    const job: Job = { job: randomUUID(), name: ref.name, tag: ref.tag, state: 'waiting', bytesExpected: null, bytesReceived: 0, bytesImported: 0, totalBytes: 0 };
    this.jobs.set(job.job, job);
    sendJson(r.res, 201, { job: job.job, upload: `/v1/portal/uploads/${job.job}` });
  }

  get(r: Request, id: string): void {
    requireUploader(r.auth);
    sendJson(r.res, 200, this.find(id));
  }

  private find(id: string): Job {
    const j = this.jobs.get(id);
    if (!j) throw new VmdnError('E_NOT_FOUND', `no upload job ${id}`, { job: id });
    return j;
  }

  async put(ctx: PortalContext, r: Request, id: string): Promise<void> {
    requireUploader(r.auth);
    const job = this.find(id);
    if (job.state !== 'waiting') throw new VmdnError('E_USAGE', `upload job ${id} is ${job.state}: create another`);
    const declared = Number(r.req.headers['content-length']);
    job.bytesExpected = Number.isSafeInteger(declared) ? declared : null;
    job.state = 'receiving';
    const dir = ctx.store.tmpDir ?? os.tmpdir();
    fs.mkdirSync(dir, { recursive: true });
    // NAME.PID.tmp: the store's gc (cleanTmp) keeps temp files of a live process, removes those of a dead one
    const file = path.join(dir, `portal-upload-${job.job}.${process.pid}.tmp`);
    try {
      const count = new Transform({ transform(b: Buffer, _e, cb) { job.bytesReceived += b.length; cb(null, b); } });
      await pipeline(r.req, count, fs.createWriteStream(file));
      job.state = 'importing';
      // the catalog row first, unpublished: once the name exists a visitor must not see it
      ctx.cat.ensureImage(job.name, false);
      const res = await importImageFile(ctx.store, file, { name: job.name, tag: job.tag }, {
        chunker: parseChunkerSpec(DEFAULT_CHUNKER_SPEC), strategy: 'chunks', cuts: { by: 'files', minFile: 16 * 1024, sparsify: false },
        onProgress: (e) => {
          if (e.unit !== 'bytes') return;
          job.bytesImported = e.done;
          if (e.total) job.totalBytes = e.total;
        },
      });
      Object.assign(job, { state: 'done', ref: formatImageRef({ name: job.name, tag: job.tag }), manifest: res.manifest, strategy: 'chunks' });
      ctx.sync.invalidate();
      await ctx.sync.fresh();
      sendJson(r.res, 201, job);
    } catch (err) {
      job.state = 'failed';
      job.error = { code: asVmdnError(err).code, message: asVmdnError(err).message };
      throw err;
    } finally {
      fs.rmSync(file, { force: true });
      setTimeout(() => this.jobs.delete(job.job), KEEP_MS).unref();
    }
  }
}
