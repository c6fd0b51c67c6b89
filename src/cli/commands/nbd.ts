/** `vmdn nbd`: serve a stored image as a network block device (NBD) until SIGINT/SIGTERM. */
import type { Command } from 'commander';
import { LocalStore } from '../../store/local/local-store.js';
import { formatImageRef, parseImageRef } from '../../store/image-name.js';
import { requireStore, resolveStoreDir } from '../../store/location.js';
import { parseListen } from '../../net/wire/http-api.js';
import path from 'node:path';
import { openStoredDevice, type OpenedDevice } from '../../nbd/open.js';
import { openRemoteDevice, type RemoteDevice } from '../../nbd/remote.js';
import { reportChanges, serveMetrics, type Snapshot } from '../../nbd/metrics.js';
import { NbdServer, type ListenAddress } from '../../nbd/server.js';
import { VmdnError } from '../../errors.js';
import { printJson, safe, type GlobalOptions } from '../output.js';
import { action, common } from '../program.js';
import { untilSignal } from './net.js';

interface NbdOptions extends GlobalOptions {
  socket?: string;
  listen?: string;
  overlay?: string;
  readonly?: boolean;
  from?: string;
  cache?: string;
  fill: boolean;
  metrics?: string;
}

export function registerNbdCommands(program: Command): void {
  common(program.command('nbd'))
    .description('serve a stored image over NBD (qemu, nbd-client): reads verified from the store, writes to an overlay')
    .argument('<image>', 'stored image name[:tag]; also the export name (the empty export name works too)')
    .option('--socket <path>', 'listen on this Unix socket')
    .option('--listen <host:port>', 'listen on TCP (no authentication: keep it on a trusted network)')
    .option('--overlay <file>', 'keep writes in this file (created, or reused if made for this image); default: a temporary overlay deleted on exit')
    .option('--readonly', 'refuse writes (EPERM); the export is flagged read-only')
    .option('--from <url>', 'serve the image from this origin or edge while it downloads: reads fetch what they touch')
    .option('--cache <dir>', 'with --from: object cache (default: the store, as for vmdn pull)')
    .option('--no-fill', 'with --from: fetch only what reads touch, no background download of the rest')
    .option('--metrics <host:port>', 'with --from: serve the counters as Prometheus text over HTTP')
    .addHelpText('after', `
What the client sees is the disk "vmdn export IMAGE" would write. Reads come from the store's
chunks, each verified by hash; writes never touch the store: they go to the overlay, in 4 KiB
blocks, and reads return the overlay's blocks over the image. Files and packages images: their
filesystems' metadata is rebuilt first (as export does, needing root; small files and packages are
read for it), big files' content is read from their chunks when the client reads their blocks.

Examples:
  vmdn nbd debian:12 --socket /tmp/debian.sock
  qemu-img compare debian.raw 'nbd+unix:///debian:12?socket=/tmp/debian.sock'
  qemu-system-x86_64 -drive file=nbd+unix:///?socket=/tmp/debian.sock,format=raw ...
  vmdn nbd debian:12 --listen 127.0.0.1:10809 --overlay debian.ovl   (writes survive restarts)
  vmdn nbd debian:12 --socket /tmp/d.sock --readonly
  vmdn nbd debian:12 --from https://origin.example --socket /tmp/d.sock   (serve it while it downloads)

With --from URL, reads fetch the objects they touch from the origin into the cache (verified,
each once); a background fill fetches the rest in disk order and names the image in the cache,
so a later pull or export needs nothing more. With --json the counters follow as JSON lines.

With --json, one JSON document (uri, export, size, overlay) is printed once the server listens.`)
    .action(action(async (image: string, o: NbdOptions) => {
      if (!!o.socket === !!o.listen) throw new VmdnError('E_USAGE', 'give exactly one of --socket PATH or --listen HOST:PORT');
      if (o.overlay && o.readonly) throw new VmdnError('E_USAGE', '--overlay and --readonly exclude each other');
      const addr: ListenAddress = o.socket ? { socket: o.socket } : parseListen(o.listen!);
      const ref = parseImageRef(image);
      const name = formatImageRef(ref);
      if (!o.from && (o.cache || !o.fill || o.metrics)) throw new VmdnError('E_USAGE', '--cache, --no-fill and --metrics go with --from URL');
      const metricsAt = o.metrics ? parseListen(o.metrics) : undefined;
      const dir = o.from ? (o.cache ? path.resolve(o.cache) : resolveStoreDir(o.store)) : resolveStoreDir(o.store);
      // a pull creates its cache; a local store must exist
      if (!o.from) requireStore(dir);
      const store = await LocalStore.open(dir);
      let opened: OpenedDevice | RemoteDevice;
      try {
        opened = o.from
          ? await openRemoteDevice(o.from, ref, store, { overlay: o.overlay, readOnly: o.readonly, fill: o.fill, fillOptions: { pauseMs: Number(process.env.VMDN_NBD_FILL_PAUSE_MS) || 0 } })
          : await openStoredDevice(store, ref, { overlay: o.overlay, readOnly: o.readonly });
      } catch (err) {
        await store.close();
        throw err;
      }
      const { device } = opened;
      const server = new NbdServer(device, {
        name,
        // the empty name, the name as typed and every spelling of the same reference
        matches: (n) => n === '' || n === image || (safeParse(n) === name),
        // failures always; why each connection ended (bad magic, client left...) with VMDN_NBD_DEBUG=1
        onEvent: (e) => {
          if (e.event === 'error' || (e.event === 'close' && process.env.VMDN_NBD_DEBUG)) process.stderr.write(`vmdn nbd: connection ${e.event === 'error' ? 'failed' : 'ended'}: ${e.why}\n`);
        },
      });
      const counters: RemoteDevice['counters'] | undefined = (opened as Partial<RemoteDevice>).counters;
      const snapshot = (): Snapshot => ({ ...counters!, guestBytesRead: server.stats.bytesRead });
      let metrics: Awaited<ReturnType<typeof serveMetrics>> | undefined;
      let stopReport = () => {};
      try {
        const uri = await server.listen(addr);
        if (counters && metricsAt) metrics = await serveMetrics(snapshot, metricsAt.host, metricsAt.port);
        const lazy = counters ? { from: o.from, cache: dir, fill: o.fill, metrics: metrics?.url ?? null } : {};
        const doc = { role: 'nbd', uri, export: name, manifest: opened.manifest, size: device.size, readOnly: device.readOnly, overlay: opened.overlay ?? null, temporaryOverlay: opened.temporaryOverlay, pid: process.pid, rebuilt: opened.rebuilt ?? null, ...lazy };
        if (o.json) printJson(doc);
        else console.log(`vmdn nbd serving ${name} (${device.size} bytes${device.readOnly ? ', read-only' : `, writes to ${safe(opened.overlay ?? '')}`}) at ${uri}${o.from ? ` from ${safe(o.from)}` : ''}${opened.rebuilt ? `; filesystem metadata rebuilt in ${(opened.rebuilt.buildMs / 1000).toFixed(1)} s, ${opened.rebuilt.directFiles} big files read from their chunks on demand` : ''}`);
        // the counters as JSON lines after the document, whenever they change
        if (counters && o.json) stopReport = reportChanges(snapshot, (line) => process.stdout.write(`${line}\n`));
      } catch (err) {
        metrics?.server.close();
        await opened.close().finally(() => store.close());
        throw err;
      }
      await untilSignal(async () => {
        stopReport();
        metrics?.server.close();
        await server.close();
        await opened.close();
        await store.close();
      });
    }));
}

function safeParse(n: string): string | undefined {
  try {
    return formatImageRef(parseImageRef(n));
  } catch {
    return undefined;
  }
}
