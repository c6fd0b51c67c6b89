/** Network delivery commands: serve (origin), edge (pull-through cache), push, pull. */
import fs from 'node:fs';
import type http from 'node:http';
import { Option, type Command } from 'commander';
import { LocalStore } from '../../store/local/local-store.js';
import { parseImageRef } from '../../store/image-name.js';
import { importImageFile } from '../../images/import.js';
import { parseChunkerSpec } from '../../strategy/chunker.js';
import { DEFAULT_CHUNKER_SPEC } from '../../strategy/defaults.js';
import { Origin } from '../../net/server/origin.js';
import { Portal } from '../../portal/portal.js';
import { TokenStore } from '../../net/server/tokens.js';
import type { Principal } from '../../net/server/auth.js';
import { DEFAULT_POLICY, Edge } from '../../net/server/edge.js';
import { POLICIES, type PolicyName } from '../../store/cache/eviction.js';
import { parseListen } from '../../net/wire/http-api.js';
import { DEFAULT_CONCURRENCY, pullImage } from '../../net/client/pull.js';
import { pushImage } from '../../net/client/push.js';
import { warmCache } from '../../net/client/warm.js';
import { collect, p2pLine, readPeerFile } from './peers.js';
import { printJson, progressBar, safe, type GlobalOptions } from '../output.js';
import { resolveStoreDir, s3StoreUrl, withStore } from '../../store/location.js';
import { S3Store } from '../../store/s3/s3-store.js';
import { action, common, imageInput } from '../program.js';
import { isImagePath } from '../../inspect/open-image.js';
import { humanBytes, parseSize } from '../../util/size.js';
import { VmdnError } from '../../errors.js';
import type { OnProgress } from '../../util/progress.js';
import { RecordSigner } from '../../net/server/record-signer.js';
import { parseDuration, readSigningKey } from './key.js';
import { keyIdHex } from '../../net/wire/minisign.js';
import { openTrust, TRUST_HELP, trustOptions, type TrustOptions } from '../trust.js';

/** --token-file wins over VMDN_TOKEN; surrounding whitespace (a trailing newline) is not part of it. */
export function readToken(file?: string): string | undefined {
  if (file) {
    try {
      return fs.readFileSync(file, 'utf8').trim() || undefined;
    } catch (err) {
      throw new VmdnError('E_USAGE', `cannot read token file ${file}: ${(err as Error).message}`);
    }
  }
  return process.env.VMDN_TOKEN?.trim() || undefined;
}

/** Run until SIGINT/SIGTERM, then close. */
export function untilSignal(close: () => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      close().then(resolve, reject);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/** One bar per phase (download objects, then write bytes): their units differ. */
function phasedBar(o: GlobalOptions, label: string): { onProgress: OnProgress; stop: () => void } {
  let cur: ReturnType<typeof progressBar> | undefined;
  let phase = '';
  return {
    onProgress: (e) => {
      if (e.phase !== phase) {
        cur?.stop();
        phase = e.phase;
        cur = progressBar(o, `${label} ${e.phase === 'fetch' ? 'objects' : 'write'}`);
      }
      cur?.onProgress?.(e);
    },
    stop: () => cur?.stop(),
  };
}

const intOpt = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new VmdnError('E_USAGE', `expected a positive integer, got "${v}"`);
  return n;
};

export function registerNetCommands(program: Command): void {
  common(program.command('serve'))
    .description('serve the store over HTTP as an origin (uploads need a bearer token)')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8480')
    .option('--token-file <file>', 'admin token: reads and uploads everything (else $VMDN_TOKEN); scoped tokens come from `vmdn token create`')
    .option('--private-prefix <prefix...>', 'names starting with PREFIX are private: only tokens with read scope on them see them')
    .option('--no-portal', 'no YouVM portal: neither its pages under / nor its API under /v1/portal/')
    .option('--sign-key <file>', 'sign every image record served with this key (vmdn key generate); clients check them with --trust')
    .option('--sign-validity <duration>', 'how long a signed record is valid (re-signed when half of it is left)', '24h')
    .action(action(async (o: GlobalOptions & { listen: string; tokenFile?: string; privatePrefix?: string[]; portal: boolean; signKey?: string; signValidity: string }) => {
      const { host, port } = parseListen(o.listen);
      const token = readToken(o.tokenFile);
      const key = o.signKey ? readSigningKey(o.signKey) : undefined;
      const validityMs = parseDuration(o.signValidity);
      const s3 = s3StoreUrl(o.store);
      const store = s3 ? await S3Store.open(s3, { create: false }) : await LocalStore.open(resolveStoreDir(o.store));
      const local = store instanceof LocalStore ? store : undefined;
      const where = local ? local.dir : (store as S3Store).url;
      // the portal keeps its catalog and built downloads beside a local store; scoped tokens live in its side records
      if (!local && o.portal) process.stderr.write('vmdn serve: the portal needs a local store; serving the API only\n');
      // the portal asks the origin who a request is and which names are private (built just below)
      const access = { authenticate: (req: http.IncomingMessage) => origin.authn.authenticate(req), hiddenNames: (p: Principal) => origin.visibility.hiddenNames(p) };
      const portal = local && o.portal ? new Portal(local, local.dir, access) : undefined;
      const origin: Origin<LocalStore | S3Store> = new Origin<LocalStore | S3Store>(store, {
        token, tokens: local && new TokenStore(local), privatePrefixes: o.privatePrefix, portal: !!portal,
        signer: key && new RecordSigner(key, store, { validityMs }),
        ...(portal ? { mount: (req, res, url) => portal.handle(req, res, url), canSeeName: (name, req) => portal.canSeeName(name, req) } : {}),
      });
      const url = await origin.listen(host, port);
      if (o.json) printJson({ role: 'origin', url, store: where, uploads: !!token, portal: !!portal, signKey: key ? keyIdHex(key.id) : null });
      else console.log(`vmdn origin serving ${safe(where)} at ${url} (uploads ${token ? 'enabled' : 'disabled'})`);
      await untilSignal(async () => {
        await origin.close();
        portal?.close();
        await store.close();
      });
    }));

  common(program.command('edge'))
    .description('run a pull-through cache in front of an origin or another edge')
    .requiredOption('--upstream <url>', 'origin or edge to fetch from')
    .requiredOption('--cache <dir>', 'cache directory')
    .requiredOption('--max-size <size>', 'cache budget, e.g. 10G')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8481')
    .addOption(new Option('--policy <policy>', 'eviction policy').choices([...POLICIES]).default(DEFAULT_POLICY))
    .option('--no-batch', 'take misses from upstream one GET each, no POST batches (a generic HTTP cache sits between this edge and its upstream)')
    .option('--token-file <file>', 'the edge\'s own token for upstream (else $VMDN_TOKEN), used for clients that send none: they all see what it may read. A client\'s own token always wins and is passed upstream')
    .action(action(async (o: GlobalOptions & { upstream: string; cache: string; maxSize: string; listen: string; policy: PolicyName; batch: boolean; tokenFile?: string }) => {
      const { host, port } = parseListen(o.listen);
      const edge = await Edge.open({ upstream: o.upstream, cacheDir: o.cache, maxSize: parseSize(o.maxSize), policy: o.policy, http: { batches: o.batch, token: readToken(o.tokenFile) } });
      const url = await edge.listen(host, port);
      if (o.json) printJson({ role: 'edge', url, upstream: o.upstream, cache: o.cache, maxBytes: parseSize(o.maxSize), policy: o.policy });
      else console.log(`vmdn edge at ${url}, upstream ${safe(o.upstream)}, cache ${safe(o.cache)} (${humanBytes(parseSize(o.maxSize))}, ${o.policy})`);
      await untilSignal(() => edge.close());
    }));

  imageInput(common(program.command('push')))
    .description('upload a stored image (or an image file, imported first) to an origin; sends only objects it lacks')
    .argument('<image>', 'local image name[:tag], or an image file')
    .argument('<url>', 'origin URL')
    .requiredOption('-n, --name <name[:tag]>', 'name at the origin')
    .option('--token-file <file>', 'bearer token with write scope on the name (else $VMDN_TOKEN)')
    .option('--private', 'make the name private at the origin: only tokens with read scope on it see it or its own objects')
    .option('--public', 'make a private name public again (without either, a name keeps what it was)')
    .option('--concurrency <n>', 'parallel uploads', intOpt, 8)
    .action(action(async (image: string, url: string, o: GlobalOptions & { name: string; tokenFile?: string; concurrency: number; private?: boolean; public?: boolean }) => {
      if (o.private && o.public) throw new VmdnError('E_USAGE', 'give --private or --public, not both');
      const remote = parseImageRef(o.name);
      const token = readToken(o.tokenFile);
      const bar = progressBar(o, 'push');
      const file = isImagePath(image);
      const r = await withStore(o.store, async (s) => {
        let local = remote;
        if (file) {
          await importImageFile(s, image, remote, { chunker: parseChunkerSpec(DEFAULT_CHUNKER_SPEC) });
        } else local = parseImageRef(image);
        return pushImage(s, { url, token, local, remote, concurrency: o.concurrency, onProgress: bar.onProgress, private: o.private ? true : o.public ? false : undefined });
      }, { create: file }).finally(bar.stop);
      if (o.json) return printJson(r);
      console.log(`pushed ${r.ref} (manifest ${r.manifest.slice(0, 12)}) to ${safe(url)}: sent ${r.objectsSent} of ${r.objects} objects, ${humanBytes(r.bytesSent)}, in ${r.seconds.toFixed(1)} s`);
    }));

  trustOptions(common(program.command('warm')))
    .description('fetch images\' objects through an edge so it holds them before clients ask (nothing is written here)')
    .argument('<url>', 'edge (or origin) URL')
    .argument('<name[:tag]...>', 'images to warm the edge with')
    .option('--packages-only', 'only the .deb objects of packages-strategy images: seed an edge with the packages a site\'s VMs share')
    .option('-j, --concurrency <n>', 'parallel downloads', '16')
    .option('--token-file <file>', 'bearer token, needed to warm private images (else $VMDN_TOKEN)')
    .addHelpText('after', TRUST_HELP)
    .action(action(async (url: string, names: string[], o: GlobalOptions & TrustOptions & { packagesOnly?: boolean; concurrency: string; tokenFile?: string }) => {
      const trust = openTrust(o);
      const bar = progressBar(o, 'warm');
      const r = await warmCache(url, names.map(parseImageRef), { token: readToken(o.tokenFile), packagesOnly: o.packagesOnly, concurrency: Number(o.concurrency) || 16, onProgress: bar.onProgress, trust }).finally(bar.stop);
      if (o.json) return printJson(r);
      console.log(`warmed ${safe(url)} with ${r.objects} objects (${humanBytes(r.bytes)})${r.packages ? `, ${r.packages} packages` : ''} of ${r.images.join(', ')}`);
    }));

  trustOptions(imageInput(common(program.command('pull'))))
    .description('download an image from an origin or edge and write it as a file, bit for bit')
    .argument('<url>', 'origin or edge URL')
    .argument('<name[:tag]>', 'image name')
    .argument('<out>', 'output file (.raw/.img or .qcow2)')
    .option('--cache <dir>', 'object cache (default: the store); finished objects survive an interrupted pull')
    .option('--seed <image...>', 'local image files to take matching chunks from')
    .addOption(new Option('--format <format>', 'output format (default: from the extension)').choices(['raw', 'qcow2']))
    .option('--concurrency <n>', 'parallel downloads', intOpt, DEFAULT_CONCURRENCY)
    .option('--retries <n>', 'attempts per request when the server is unreachable', intOpt, 5)
    .option('--no-batch', 'one GET per object, no POST batches or packs: behind a generic HTTP cache or CDN, which can cache GETs only')
    .option('--no-packs', 'no packs: missing objects come as stored, not compressed together against the images the cache holds (less server CPU, more bytes)')
    .option('--token-file <file>', 'bearer token, needed for private images (else $VMDN_TOKEN)')
    .option('--peer <url>', 'another site\'s vmdn edge or serve, asked for objects before the origin (repeatable; every object verified; docs/p2p.md)', collect, [])
    .option('--peers <file>', 'peer URLs, one per line (# comments), added to --peer')
    .addHelpText('after', TRUST_HELP)
    .action(action(async (url: string, name: string, out: string, o: GlobalOptions & TrustOptions & { cache?: string; seed?: string[]; format?: string; concurrency: number; retries: number; batch: boolean; packs: boolean; tokenFile?: string; peer: string[]; peers?: string }) => {
      const ref = parseImageRef(name);
      const trust = openTrust(o);
      // pull reports on stdout: an image there would be corrupted by it (export can stream instead)
      if (out === '-') throw new VmdnError('E_USAGE', 'pull writes a file, not stdout; once pulled, the image is in the store: `vmdn export NAME -` streams it');
      const cache = await LocalStore.open(o.cache ?? resolveStoreDir(o.store));
      const bar = phasedBar(o, 'pull');
      try {
        const r = await pullImage({
          url, ref, out, format: o.format, cache, seeds: o.seed, concurrency: o.concurrency, peers: [...o.peer, ...(o.peers ? readPeerFile(o.peers) : [])],
          http: { retries: o.retries, batches: o.batch, trust, token: readToken(o.tokenFile) }, packs: o.packs, onProgress: bar.onProgress,
        }).finally(bar.stop);
        if (o.json) return printJson(r);
        const ob = r.objects;
        console.log(`pulled ${r.ref} to ${safe(r.out ?? '')} (${r.format}, ${humanBytes(r.virtualSize)} virtual) in ${r.seconds.toFixed(1)} s`);
        console.log(`  downloaded ${humanBytes(r.bytesDownloaded)} for ${humanBytes(r.imageStoredBytes)} of objects (${humanBytes(r.imageDataBytes)} data)`);
        console.log(`  objects: ${ob.total} total, ${ob.cached} already cached, ${ob.seeded} from seeds, ${ob.downloaded} downloaded`);
        if (r.p2p) console.log(`  ${p2pLine(r.p2p)}`);
        if (r.packs.packs) console.log(`  packs: ${r.packs.objects} objects in ${r.packs.packs} packs, ${humanBytes(r.packs.bytes)} (compressed against the cache's images)`);
      } finally {
        await cache.close();
      }
    }));
}
