/**
 * What a lazily served image is doing, for people and scrapers: the
 * counters as one JSON line whenever they changed (checked every second),
 * and as Prometheus text on a small HTTP endpoint (`--metrics HOST:PORT`).
 */
import http from 'node:http';
import { prometheus } from '../net/wire/http-api.js';
import type { LazyCounters } from './demand.js';

export type Snapshot = LazyCounters & { guestBytesRead: number };

/** Calls `print` with the counters each time they differ from the last printed; returns the stop function (which prints a last change). */
export function reportChanges(read: () => Snapshot, print: (line: string) => void, everyMs = 1000): () => void {
  let last = '';
  const tick = () => {
    const line = JSON.stringify({ event: 'counters', ...read() });
    if (line !== last) print((last = line));
  };
  const timer = setInterval(tick, everyMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    tick();
  };
}

const HELP: Record<string, string> = {
  guestBytesReadTotal: 'bytes read by NBD clients',
  demandObjectsTotal: 'objects fetched from the origin because a read needed them',
  demandBytesTotal: 'encoded bytes of the objects fetched on demand',
  prefilledObjectsTotal: 'objects fetched by the background fill',
  prefilledBytesTotal: 'encoded bytes of the objects fetched by the fill',
  demandErrorsTotal: 'reads failed because an object could not be fetched (EIO)',
  fillErrorsTotal: 'fill batches that failed and were retried',
  objects: 'objects the image needs',
  cachedObjects: 'objects of the image in the local cache',
  fillDone: '1 once every object is cached and the image is named in the cache',
  profileObjects: 'objects in the boot profile the fill follows first (0: none)',
  profilePrefetchedTotal: 'boot profile objects fetched by the fill',
  profileHitsTotal: 'objects a read found cached because the fill had prefetched them from the profile',
};

export function metricsText(s: Snapshot): string {
  return prometheus('vmdn_nbd', {
    guestBytesReadTotal: s.guestBytesRead, demandObjectsTotal: s.demandObjects, demandBytesTotal: s.demandBytes,
    prefilledObjectsTotal: s.prefilledObjects, prefilledBytesTotal: s.prefilledBytes, demandErrorsTotal: s.demandErrors,
    fillErrorsTotal: s.fillErrors, objects: s.objects, cachedObjects: s.cachedObjects, fillDone: s.fillDone ? 1 : 0,
    profileObjects: s.profileObjects, profilePrefetchedTotal: s.profilePrefetched, profileHitsTotal: s.profileHits,
  }, HELP);
}

/** GET /metrics (any path) answers the counters; resolves to the server and its URL. */
export async function serveMetrics(read: () => Snapshot, host: string, port: number): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(metricsText(read()));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as { address: string; port: number };
  return { server, url: `http://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}/metrics` };
}
