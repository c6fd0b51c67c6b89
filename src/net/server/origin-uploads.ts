/**
 * The origin's write side: authenticated uploads of objects, image names and
 * boot profiles (docs/http-api.md). Uploads are decoded and re-hashed before
 * they are stored, and a name is only given to a manifest whose every object
 * is present. A push is several requests, all run under the store's writer
 * lease, which outlives the last of them by `leaseMs` (see `linger`).
 */
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { asWriter, hasBootProfiles, presentIn } from '../../store/types.js';
import { nameImage } from '../../images/names.js';
import { assertDigest, type Digest } from '../../store/digest.js';
import { formatImageRef } from '../../store/image-name.js';
import { decodeManifest } from '../../model/manifest.js';
import { decodeProfile } from '../../model/profile.js';
import { imageObjects } from '../../model/objects.js';
import { VmdnError } from '../../errors.js';
import { isDigestList, readBody, readJson, sendJson } from '../wire/http-api.js';
import { requireUpload, requireWrite, type Principal } from './auth.js';
import type { Visibility } from './visibility.js';
import type { OriginStats, OriginStore } from './origin-types.js';

/**
 * An uploaded object named as a manifest (or a tree) that does not decode as
 * one is the uploader's error (400), not a damaged store (E_MANIFEST, 500).
 */
function uploaderFault(err: unknown): never {
  if (err instanceof VmdnError && err.code === 'E_MANIFEST') throw new VmdnError('E_USAGE', `${err.message}: not a valid manifest`, err.data, { cause: err });
  throw err;
}

export class OriginUploads {
  /**
   * A push is several requests (ask what is missing, upload, name the
   * manifest): the store's writer lease is taken by the first and kept until
   * no upload request came for leaseMs, so a gc on this store waits
   * instead of deleting what a push was told is present or has just sent.
   */
  private lastUpload = 0;
  private linger: Promise<void> | undefined;
  private readonly closing = new AbortController();

  constructor(
    private readonly store: OriginStore,
    private readonly visibility: Visibility,
    private readonly stats: OriginStats,
    private readonly leaseMs: number,
  ) {}

  /** Give the lease back now (the origin closes). */
  async close(): Promise<void> {
    this.closing.abort();
    await this.linger;
  }

  /** Run a scope check for an upload; a refusal drains the request. */
  auth(req: http.IncomingMessage, check: () => void): void {
    try {
      check();
    } catch (err) {
      this.stats.authFailures++;
      // drain the upload so the client sees the 401 rather than a reset
      req.resume();
      throw err;
    }
  }

  /** POST /v1/objects/missing: which of these a push must still upload. */
  async missing(req: http.IncomingMessage, res: http.ServerResponse, p: Principal): Promise<void> {
    this.auth(req, () => requireUpload(p));
    const body = await readJson<{ digests?: unknown }>(req, 16 << 20);
    if (!isDigestList(body.digests)) throw new VmdnError('E_USAGE', 'body must be {"digests": [up to 100000 digests]}');
    const digests = body.digests;
    // under the lease: what is present now stays until the push names its manifest
    const have = await this.uploading(() => presentIn(this.store, digests));
    return sendJson(res, 200, { missing: digests.filter((d) => !have.has(d)) });
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
    const ms = this.leaseMs;
    for (let left = ms; left > 0 && !this.closing.signal.aborted; left = this.lastUpload + ms - Date.now()) {
      await sleep(left, undefined, { signal: this.closing.signal }).catch(() => {});
    }
  }

  async putObject(req: http.IncomingMessage, res: http.ServerResponse, digest: Digest, p: Principal): Promise<void> {
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

  async putImage(req: http.IncomingMessage, res: http.ServerResponse, ref: { name: string; tag: string }, p: Principal): Promise<void> {
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
  async putProfile(req: http.IncomingMessage, res: http.ServerResponse, manifestDigest: Digest, p: Principal): Promise<void> {
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
