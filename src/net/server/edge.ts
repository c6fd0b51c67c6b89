/**
 * The edge: a pull-through cache speaking the same API as the origin, so
 * edges chain (edge -> edge -> origin) and clients cannot tell them apart.
 * Objects are fetched once per digest however many clients miss at once,
 * verified before they are cached or served, kept within a byte budget by a
 * pluggable eviction policy, and served from disk with Range support.
 */
import http from 'node:http';
import fs from 'node:fs';
import { LocalStore } from '../../store/local/local-store.js';
import { VmdnError } from '../../errors.js';
import { isDigest, type Digest } from '../../store/digest.js';
import { CachingStore } from '../../store/cache/caching-store.js';
import { createPolicy, type PolicyName } from '../../store/cache/eviction.js';
import { HttpStore, type HttpStoreOptions } from '../client/http-store.js';
import { serverOptions } from './limits.js';
import {
  closeServer, listen, parseJson, PRIVATE_OBJECT_CACHE_CONTROL, PRIVATE_REF_CACHE_CONTROL, prometheus, REF_CACHE_CONTROL, route, sendError, sendJson, serveObjectBuffer, serveObjectFile, wantsRefetch,
} from '../wire/http-api.js';
import { EdgeAccess } from './edge-access.js';
import { readBatchRequest, serveBatch } from '../wire/batch.js';

/** The frequency-aware policy won the benchmark (bench/net.ts: hit ratio under mixed popularity). */
export const DEFAULT_POLICY: PolicyName = 'wtinylfu';

export interface EdgeOptions {
  upstream: string;
  cacheDir: string;
  /** Byte budget for cached objects (encoded sizes). */
  maxSize: number;
  policy?: PolicyName;
  http?: HttpStoreOptions;
  /** How long a name:tag resolution is reused (the origin allows 5 s). */
  refTtlMs?: number;
  /** How long the origin's word on private objects is reused (default edge-access.ts). */
  accessTtlMs?: number;
}

export interface EdgeStats {
  requests: number;
  objectRequests: number;
  bytesServed: number;
}

export class Edge {
  readonly server: http.Server;
  readonly serving: EdgeStats = { requests: 0, objectRequests: 0, bytesServed: 0 };
  url = '';
  private readonly refs = new Map<string, { at: number; body: unknown }>();
  /** Private images (issue 16): every object served is first cleared with the origin for the client's token. */
  readonly access: EdgeAccess;

  private constructor(readonly store: CachingStore, readonly upstream: HttpStore, private readonly opts: EdgeOptions) {
    this.access = new EdgeAccess(upstream, opts.accessTtlMs);
    this.server = http.createServer(serverOptions(), (req, res) => {
      this.handle(req, res).catch((err) => sendError(res, err));
    });
  }

  static async open(opts: EdgeOptions): Promise<Edge> {
    if (!(opts.maxSize > 0)) throw new VmdnError('E_USAGE', '--max-size must be positive');
    const upstream = new HttpStore(opts.upstream, opts.http);
    // codec workers (started on the first fill) verify and write what arrives from upstream,
    // leaving the event loop to HTTP; the edge never decodes from its own disk
    // loose files, not packs: an eviction must free its bytes at once (and they are streamed by path)
    const cache = await LocalStore.open(opts.cacheDir, { loose: true });
    await cache.cleanTmp();
    const store = await CachingStore.open(cache, upstream, createPolicy(opts.policy ?? DEFAULT_POLICY, opts.maxSize));
    return new Edge(store, upstream, opts);
  }

  async listen(host = '127.0.0.1', port = 0): Promise<string> {
    this.url = await listen(this.server, host, port);
    return this.url;
  }

  async close(): Promise<void> {
    await closeServer(this.server);
    await this.store.close();
  }

  get stats(): Record<string, number | string> {
    const c = this.store.stats;
    const p = this.store.policy!;
    return {
      role: 'edge', upstream: this.opts.upstream, policy: p.name, ...this.serving, hits: c.hits, misses: c.misses, coalesced: c.coalesced,
      objectsFromUpstream: c.objectsFromUpstream, bytesFromUpstream: c.bytesFromUpstream, evictions: c.evictions, bytesEvicted: c.bytesEvicted,
      localCorrupt: c.localCorrupt, upstreamCorrupt: this.upstream.stats.corrupt, upstreamRetries: this.upstream.stats.retries,
      cachedObjects: p.size, cachedBytes: p.bytes, maxBytes: p.capacity,
    };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.serving.requests++;
    const url = new URL(req.url ?? '/', 'http://x');
    const r = route(url.pathname);
    const m = req.method ?? 'GET';
    if (!r) throw new VmdnError('E_NOT_FOUND', `no such endpoint ${url.pathname}`);
    if (r.kind === 'batch' && m === 'POST') return this.batch(req, res);
    // edges chain: the next edge down asks this one what the origin said
    if (r.kind === 'access') return this.access.answer(req, res);
    // docs/http-api.md: packs are the origin's; 404 is what a client takes for "no packs here"
    if (r.kind === 'pack') throw new VmdnError('E_NOT_FOUND', 'an edge does not serve packs: ask for batches or single objects');
    if (m !== 'GET' && m !== 'HEAD') throw new VmdnError('E_USAGE', `${m} not allowed: an edge is read-only, upload to the origin`);
    switch (r.kind) {
      case 'object':
        this.serving.objectRequests++;
        {
          // not `+= await`: that would read the counter before the await and lose concurrent updates
          const n = await this.serveObject(req, res, r.digest);
          this.serving.bytesServed += n;
        }
        return;
      case 'images':
        // a client's own token sees its own list, asked upstream with it and shared with no one
        if (req.headers.authorization !== undefined) return sendJson(res, 200, { images: ((await this.access.ask('/v1/images', req.headers.authorization)) as { images?: unknown })?.images ?? [] }, PRIVATE_REF_CACHE_CONTROL);
        return sendJson(res, 200, { images: await this.upstream.listImages() }, REF_CACHE_CONTROL);
      case 'ref':
        return this.passThrough(req, res, url.pathname, 'manifest');
      // a boot profile pointer is mutable like a name: reused as briefly; the profile object is an object like any
      case 'profile':
        return this.passThrough(req, res, url.pathname, 'profile');
      case 'stats':
        return sendJson(res, 200, this.stats);
      case 'metrics': {
        const s = this.stats;
        const counters: Record<string, number> = {
          hitsTotal: s.hits as number, missesTotal: s.misses as number, bytesServedTotal: s.bytesServed as number,
          bytesFromUpstreamTotal: s.bytesFromUpstream as number, evictionsTotal: s.evictions as number,
          cachedBytes: s.cachedBytes as number, cachedObjects: s.cachedObjects as number, maxBytes: s.maxBytes as number,
        };
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'cache-control': 'no-store' });
        res.end(prometheus('vmdn_edge', counters, { hitsTotal: 'object requests served from the cache', missesTotal: 'objects fetched from upstream' }));
        return;
      }
      case 'health':
        return sendJson(res, 200, { ok: true });
      default:
        throw new VmdnError('E_USAGE', `${m} not allowed on ${url.pathname}`);
    }
  }

  /** A small mutable answer of upstream's (a name's manifest, a manifest's profile), reused for refTtlMs; `field` must hold a digest. */
  private async passThrough(req: http.IncomingMessage, res: http.ServerResponse, pathname: string, field: 'manifest' | 'profile'): Promise<void> {
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const body = (await this.access.ask(pathname, auth)) as Record<string, unknown> | null;
      if (!isDigest(body?.[field])) throw new VmdnError('E_UNREACHABLE', `upstream ${this.opts.upstream} answered ${pathname} without a valid ${field} digest`);
      return sendJson(res, 200, body, PRIVATE_REF_CACHE_CONTROL);
    }
    const hit = this.refs.get(pathname);
    const ttl = this.opts.refTtlMs ?? 5000;
    if (hit && Date.now() - hit.at < ttl && !wantsRefetch(req)) return sendJson(res, 200, hit.body, REF_CACHE_CONTROL);
    const reply = await this.upstream.request('GET', pathname, { maxBody: 64 << 10 });
    let body: Record<string, unknown> | undefined;
    try {
      body = parseJson(reply.body.toString('utf8')) as Record<string, unknown>;
    } catch {
      /* reported below */
    }
    if (!isDigest(body?.[field])) throw new VmdnError('E_UNREACHABLE', `upstream ${this.opts.upstream} answered ${pathname} without a valid ${field} digest`);
    this.refs.set(pathname, { at: Date.now(), body });
    return sendJson(res, 200, body, REF_CACHE_CONTROL);
  }

  private async batch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const digests = await readBatchRequest(req);
    const auth = req.headers.authorization;
    const access = await this.access.check(digests, auth);
    // private objects this edge lacks come for this client alone (passThrough), the rest through the cache
    const viaCache = digests.filter((d) => access.get(d) === 'public' || (access.get(d) === 'private' && this.store.lookup(d)));
    // the misses come from upstream in one batch too, not one request each
    const filling = this.store.fillMany(viaCache);
    const sent = await serveBatch(res, digests, async (d) => {
      const a = access.get(d);
      if (!a) return undefined;
      if (a === 'private' && !this.store.lookup(d) && !filling.has(d)) return this.access.passThrough(d, auth).catch(absentAsUndefined);
      const f = filling.get(d);
      if (!f) return this.storedBytes(d);
      try {
        return (await f).encoded;
      } catch (err) {
        if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') return undefined;
        throw err;
      }
    });
    this.serving.objectRequests += sent.objects;
    this.serving.bytesServed += sent.bytes;
  }

  /** An object's stored bytes for a batch: the cached copy, else fetched (verified) from upstream; undefined if upstream lacks it. */
  private async storedBytes(digest: Digest): Promise<Uint8Array | undefined> {
    if (this.store.lookup(digest)) {
      try {
        return fs.readFileSync(this.store.cache.objectPath(digest));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        await this.store.drop(digest, false);
      }
    }
    try {
      return (await this.store.fill(digest)).encoded;
    } catch (err) {
      if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') return undefined;
      throw err;
    }
  }

  private async serveObject(req: http.IncomingMessage, res: http.ServerResponse, digest: Digest): Promise<number> {
    const auth = req.headers.authorization;
    const a = (await this.access.check([digest], auth)).get(digest);
    if (!a) throw new VmdnError('E_NOT_FOUND', `object ${digest} not at this origin`, { digest });
    if (a === 'private') {
      res.setHeader('cache-control', PRIVATE_OBJECT_CACHE_CONTROL);
      if (!this.store.lookup(digest)) return serveObjectBuffer(req, res, digest, await this.access.passThrough(digest, auth));
    }
    const refetch = wantsRefetch(req);
    // a client that found our copy damaged asks again with no-cache: drop it and go upstream
    if (refetch && (await this.store.cache.has(digest))) await this.store.drop(digest, false);
    if (!refetch && this.store.lookup(digest)) {
      try {
        return await serveObjectFile(req, res, digest, this.store.cache.objectPath(digest));
      } catch (err) {
        // evicted or deleted between lookup and open: fetch it again below
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        await this.store.drop(digest, false);
      }
    }
    const f = await this.store.fill(digest, { noCache: refetch });
    return serveObjectBuffer(req, res, digest, f.encoded);
  }
}

function absentAsUndefined(err: unknown): undefined {
  if (err instanceof VmdnError && err.code === 'E_NOT_FOUND') return undefined;
  throw err;
}
