/** `vmdn nbd`: serve a stored image as a network block device (NBD) until SIGINT/SIGTERM. */
import v8 from 'node:v8';
import type { Command } from 'commander';
import { parseListen } from '../../net/wire/http-api.js';
import { reportChanges } from '../../nbd/metrics.js';
import { checkServeOptions, serveImage } from '../../nbd/serve-image.js';
import type { RemoteDevice } from '../../nbd/remote.js';
import { VmdnError } from '../../errors.js';
import { printJson, safe, type GlobalOptions } from '../output.js';
import { action, common } from '../program.js';
import { readToken, untilSignal } from './net.js';
import { collect, readPeerFile } from './peers.js';
import { openTrust, TRUST_HELP, trustOptions, type TrustOptions } from '../trust.js';

interface NbdOptions extends GlobalOptions, TrustOptions {
  socket?: string;
  listen?: string;
  overlay?: string;
  readonly?: boolean;
  from?: string;
  peer: string[];
  peers?: string;
  tokenFile?: string;
  cache?: string;
  fill: boolean;
  metrics?: string;
  recordProfile?: boolean;
  profile: boolean;
}

export function registerNbdCommands(program: Command): void {
  trustOptions(common(program.command('nbd')))
    .description('serve a stored image over NBD (qemu, nbd-client): reads verified from the store, writes to an overlay')
    .argument('<image>', 'stored image name[:tag]; also the export name (the empty export name works too)')
    .option('--socket <path>', 'listen on this Unix socket')
    .option('--listen <host:port>', 'listen on TCP (no authentication: keep it on a trusted network)')
    .option('--overlay <file>', 'keep writes in this file (created, or reused if made for this image); default: a temporary overlay deleted on exit')
    .option('--readonly', 'refuse writes (EPERM); the export is flagged read-only')
    .option('--from <url>', 'serve the image from this origin or edge while it downloads: reads fetch what they touch')
    .option('--peer <url>', 'with --from: another site\'s vmdn edge or serve, asked for objects before the origin (repeatable; docs/p2p.md)', collect, [])
    .option('--peers <file>', 'with --from: peer URLs, one per line, added to --peer')
    .option('--token-file <file>', 'with --from: bearer token for the origin, needed for private images (else $VMDN_TOKEN)')
    .option('--cache <dir>', 'with --from: object cache (default: the store, as for vmdn pull)')
    .option('--record-profile', 'record the order clients first read the image\'s objects (a boot profile); stored on exit, tied to the image (vmdn push carries it)')
    .option('--no-profile', 'with --from: ignore the origin\'s boot profile (the fill goes in disk order)')
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

Boot profiles: --record-profile notes which objects clients read first, in order (boot the VM
once through it), and on SIGINT/SIGTERM stores that list in the store (the cache with --from),
tied to the image; vmdn push carries it to the origin. A later --from of the image fetches the
profile first and its fill prefetches those objects ahead of the guest; the counters
profilePrefetched and profileHits (against demandObjects) show whether it pays off.
  vmdn nbd debian:12 --socket /tmp/d.sock --record-profile   (then boot, then Ctrl-C)

With --json, one JSON document (uri, export, size, overlay) is printed once the server listens.`)
    .addHelpText('after', TRUST_HELP)
    .action(action(async (image: string, o: NbdOptions) => {
      if (!!o.socket === !!o.listen) throw new VmdnError('E_USAGE', 'give exactly one of --socket PATH or --listen HOST:PORT');
      checkServeOptions(o);
      if ((o.trust || o.trustDir) && !o.from) throw new VmdnError('E_USAGE', '--trust and --trust-dir go with --from URL');
      if ((o.peer.length || o.peers) && !o.from) throw new VmdnError('E_USAGE', '--peer and --peers go with --from URL');
      const served = await serveImage({
        trust: o.from ? openTrust(o) : undefined,
        image, listen: o.socket ? { socket: o.socket } : parseListen(o.listen!), store: o.store,
        overlay: o.overlay, readOnly: o.readonly, from: o.from, token: o.from ? readToken(o.tokenFile) : undefined, cache: o.cache, fill: o.fill,
        peers: [...o.peer, ...(o.peers ? readPeerFile(o.peers) : [])],
        metrics: o.metrics ? parseListen(o.metrics) : undefined, profile: o.profile, recordProfile: o.recordProfile,
        // failures always; why each connection ended (bad magic, client left...) with VMDN_NBD_DEBUG=1
        onEvent: (e) => {
          if (e.event === 'error' || (e.event === 'close' && process.env.VMDN_NBD_DEBUG)) process.stderr.write(`vmdn nbd: connection ${e.event === 'error' ? 'failed' : 'ended'}: ${e.why}\n`);
        },
      });
      const { opened, name, uri, counters } = served;
      const { device } = opened;
      // Read through the slab, the server's work is native (decode and hash in the workers, the
      // socket's writev) under thin JS glue; TurboFan's compiles of that glue took ~0.25 s of CPU
      // on V8's helper threads per process (~15 % of the server's CPU for a whole read of base),
      // and the main thread's CPU was the same without them. Only there: files images rebuild
      // their filesystems in JS. Process-wide (the workers too), set before any client connects.
      if (opened.slab && process.env.VMDN_NBD_OPT !== '1') v8.setFlagsFromString('--no-opt');
      let stopReport = () => {};
      try {
        const lazy = counters ? { from: o.from, cache: served.storeDir, fill: o.fill, metrics: served.metricsUrl ?? null, profile: (opened as RemoteDevice).profile?.digest ?? null } : {};
        const doc = { role: 'nbd', uri, recordProfile: !!served.recorder, export: name, manifest: opened.manifest, size: device.size, readOnly: device.readOnly, overlay: opened.overlay ?? null, temporaryOverlay: opened.temporaryOverlay, pid: process.pid, rebuilt: opened.rebuilt ?? null, ...lazy };
        if (o.json) printJson(doc);
        else console.log(`vmdn nbd serving ${name} (${device.size} bytes${device.readOnly ? ', read-only' : `, writes to ${safe(opened.overlay ?? '')}`}) at ${uri}${o.from ? ` from ${safe(o.from)}` : ''}${opened.rebuilt ? `; filesystem metadata rebuilt in ${(opened.rebuilt.buildMs / 1000).toFixed(1)} s, ${opened.rebuilt.directFiles} big files read from their chunks on demand` : ''}`);
        // the counters as JSON lines after the document, whenever they change
        if (counters && o.json) stopReport = reportChanges(served.snapshot, (line) => process.stdout.write(`${line}\n`));
      } catch (err) {
        await served.close();
        throw err;
      }
      await untilSignal(async () => {
        stopReport();
        const { profile } = await served.close();
        if (served.recorder) reportProfile(profile, served.recorder.count, !!o.json);
      });
    }));
}

function reportProfile(digest: string | undefined, objects: number, json: boolean): void {
  if (json) process.stdout.write(`${JSON.stringify({ event: 'profile', profile: digest ?? null, objects })}\n`);
  else console.log(digest ? `vmdn nbd: boot profile of ${objects} objects stored (${digest.slice(0, 12)})` : 'vmdn nbd: no reads, no boot profile stored');
}
