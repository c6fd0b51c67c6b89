/**
 * A stored image served over NBD, as one call: the store (or, with `from`, a
 * cache in front of an origin) opened, the device over it, the server
 * listening, and the counters' HTTP endpoint if asked. `vmdn nbd` and
 * `vmdn boot` share it, so both serve the same way; `close()` undoes it all,
 * in order, once.
 */
import path from 'node:path';
import { LocalStore } from '../store/local/local-store.js';
import { formatImageRef, parseImageRef, type ImageRef } from '../store/image-name.js';
import { requireStore, resolveStoreDir } from '../store/location.js';
import { openStoredDevice, type OpenedDevice } from './open.js';
import { openRemoteDevice, type RemoteDevice } from './remote.js';
import { serveMetrics, type Snapshot } from './metrics.js';
import { NbdServer, type ListenAddress } from './server.js';
import type { LazyCounters } from './demand.js';
import { ProfileRecorder } from './profile.js';
import { VmdnError } from '../errors.js';
import type { RecordCheck } from '../net/client/trust.js';

export interface ServeImageOptions {
  /** The image as typed (also accepted as an export name). */
  image: string;
  listen: ListenAddress;
  store?: string;
  overlay?: string;
  readOnly?: boolean;
  from?: string;
  /** With `from`: the bearer token sent to the origin (private images, issue 16). */
  token?: string;
  /** With `from`: other sites' vmdn servers asked for objects first (docs/p2p.md). */
  peers?: string[];
  cache?: string;
  /** With `from`: fetch the rest in the background (default true). */
  fill?: boolean;
  metrics?: { host: string; port: number };
  /** With `from`: use the origin's boot profile to order the fill (default true). */
  profile?: boolean;
  /** With `from`: check the name's signed record with these keys (`--trust`). */
  trust?: RecordCheck;
  /** Record the order objects are first read; stored by `close()`. */
  recordProfile?: boolean;
  /** Connection events (a client cut off and why), for logs. */
  onEvent?: (e: { event: 'connect' | 'close' | 'error'; why?: string }) => void;
}

export interface ServedImage {
  ref: ImageRef;
  /** The export name: the reference spelled in full. */
  name: string;
  uri: string;
  opened: OpenedDevice | RemoteDevice;
  server: NbdServer;
  /** The lazy counters, with `from` only. */
  counters?: LazyCounters;
  /** The store directory, or the cache with `from`. */
  storeDir: string;
  metricsUrl?: string;
  /** The lazy counters and the guest's bytes read (with `from`). */
  snapshot(): Snapshot;
  /** The boot profile being recorded (`recordProfile`). */
  recorder?: ProfileRecorder;
  /**
   * Stops serving; a recorded profile is stored first (its digest, if any
   * reads were seen) unless `keepProfile` is false (a run that failed: its
   * reads are no boot's). The first call decides; later ones share it.
   */
  close(opts?: { keepProfile?: boolean }): Promise<{ profile?: string }>;
}

/** Checks the option combinations `vmdn nbd` and `vmdn boot` share. */
export function checkServeOptions(o: { overlay?: string; readonly?: boolean; from?: string; cache?: string; fill?: boolean; metrics?: string; profile?: boolean }): void {
  if (o.overlay && o.readonly) throw new VmdnError('E_USAGE', '--overlay and --readonly exclude each other');
  if (!o.from && (o.cache || o.fill === false || o.metrics || o.profile === false)) throw new VmdnError('E_USAGE', '--cache, --no-fill, --no-profile and --metrics go with --from URL');
}

export async function serveImage(o: ServeImageOptions): Promise<ServedImage> {
  const ref = parseImageRef(o.image);
  const name = formatImageRef(ref);
  const dir = o.from ? (o.cache ? path.resolve(o.cache) : resolveStoreDir(o.store)) : resolveStoreDir(o.store);
  // a pull creates its cache; a local store must exist
  if (!o.from) requireStore(dir);
  const store = await LocalStore.open(dir);
  let opened: OpenedDevice | RemoteDevice;
  try {
    opened = o.from
      ? await openRemoteDevice(o.from, ref, store, { overlay: o.overlay, readOnly: o.readOnly, fill: o.fill !== false, profile: o.profile !== false, peers: o.peers, http: { trust: o.trust, token: o.token }, fillOptions: { pauseMs: Number(process.env.VMDN_NBD_FILL_PAUSE_MS) || 0 } })
      : await openStoredDevice(store, ref, { overlay: o.overlay, readOnly: o.readOnly });
  } catch (err) {
    await store.close();
    throw err;
  }
  const recorder = o.recordProfile ? ProfileRecorder.attach(opened) : undefined;
  const server = new NbdServer(opened.device, {
    name,
    // the empty name, the name as typed and every spelling of the same reference
    matches: (n) => n === '' || n === o.image || safeParse(n) === name,
    onEvent: o.onEvent,
  });
  const counters = (opened as Partial<RemoteDevice>).counters;
  const snapshot = (): Snapshot => ({ ...counters!, guestBytesRead: server.stats.bytesRead });
  let metrics: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  let closing: Promise<{ profile?: string }> | undefined;
  const close = (c: { keepProfile?: boolean } = {}) => (closing ??= (async () => {
    metrics?.server.close();
    try {
      await server.close();
      // after the last read, before the store closes
      return { profile: recorder && c.keepProfile !== false ? await recorder.save(store) : undefined };
    } finally {
      await opened.close().finally(() => store.close());
    }
  })());
  try {
    const uri = await server.listen(o.listen);
    if (counters && o.metrics) metrics = await serveMetrics(snapshot, o.metrics.host, o.metrics.port);
    return { ref, name, uri, opened, server, counters, storeDir: dir, metricsUrl: metrics?.url, snapshot, recorder, close };
  } catch (err) {
    metrics?.server.close();
    await opened.close().finally(() => store.close());
    throw err;
  }
}

function safeParse(n: string): string | undefined {
  try {
    return formatImageRef(parseImageRef(n));
  } catch {
    return undefined;
  }
}
