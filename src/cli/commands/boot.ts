/** `vmdn boot`: from an image name to a running VM (qemu, direct kernel boot, the disk served over NBD). */
import { Option, type Command } from 'commander';
import { parseListen } from '../../net/wire/http-api.js';
import { checkServeOptions } from '../../nbd/serve-image.js';
import { boot } from '../../nbd/boot.js';
import { humanBytes } from '../../util/size.js';
import { VmdnError } from '../../errors.js';
import { printJson, safe, type GlobalOptions } from '../output.js';
import { action, common } from '../program.js';
import { openTrust, TRUST_HELP, trustOptions, type TrustOptions } from '../trust.js';
import { readToken } from './net.js';
import { collect, readPeerFile } from './peers.js';

interface BootOptions extends GlobalOptions, TrustOptions {
  from?: string;
  tokenFile?: string;
  cache?: string;
  fill: boolean;
  recordProfile?: boolean;
  profile: boolean;
  overlay?: string;
  readonly?: boolean;
  memory: number;
  cpus: number;
  append?: string;
  until?: string;
  timeout?: number;
  metrics?: string;
  peer: string[];
  peers?: string;
}

const intIn = (name: string, min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw new VmdnError('E_USAGE', `${name}: expected a whole number from ${min} to ${max}, got ${v}`);
  return n;
};

const seconds = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 7 * 86400) throw new VmdnError('E_USAGE', `--timeout: expected seconds (> 0), got ${v}`);
  return n;
};

/** The --until pattern, checked now rather than when the console is already running. */
export function untilPattern(s: string): RegExp {
  try {
    return new RegExp(s);
  } catch (err) {
    throw new VmdnError('E_USAGE', `--until: not a regular expression: ${(err as Error).message}`);
  }
}

export function registerBootCommands(program: Command): void {
  trustOptions(common(program.command('boot')))
    .description('boot a stored image (or one on an origin, with --from) in qemu: kernel and initrd read from the image, its disk served over NBD')
    .argument('<image>', 'stored image name[:tag] (chunk-strategy images)')
    .argument('[qemu-args...]', 'after --: more arguments for qemu-system-x86_64 (e.g. -- -nic user)')
    .option('--from <url>', 'boot the image from this origin or edge while it downloads: the guest\'s reads fetch what they touch')
    .option('--cache <dir>', 'with --from: object cache (default: the store)')
    .option('--token-file <file>', 'with --from: bearer token for the origin, needed for private images (else $VMDN_TOKEN)')
    .option('--peer <url>', 'with --from: another site\'s vmdn edge or serve, asked for objects before the origin (repeatable; docs/p2p.md)', collect, [])
    .option('--peers <file>', 'with --from: peer URLs, one per line, added to --peer')
    .option('--no-fill', 'with --from: fetch only what the guest reads, no background download of the rest')
    .option('--record-profile', 'record the order this boot first reads the image\'s objects (a boot profile), stored with the image when the run ends; vmdn push carries it, and later --from boots prefetch in its order')
    .option('--no-profile', 'with --from: ignore the origin\'s boot profile (the fill goes in disk order)')
    .option('--overlay <file>', 'keep the guest\'s writes in this file (reused next time); default: a temporary overlay deleted on exit')
    .option('--readonly', 'a read-only disk (the kernel is given "ro")')
    .addOption(new Option('--memory <MiB>', 'guest memory in MiB').argParser(intIn('--memory', 64, 1 << 20)).default(1024))
    .addOption(new Option('--cpus <n>', 'virtual CPUs').argParser(intIn('--cpus', 1, 256)).default(1))
    .option('--append <args>', 'more kernel arguments, after "root=/dev/vdaN rw console=ttyS0"')
    .option('--until <regex>', 'watch the console; when a line matches (e.g. "login:"), stop the VM and exit 0')
    .addOption(new Option('--timeout <seconds>', 'stop the VM and fail (exit 9) if it still runs (or --until has not matched) after this long').argParser(seconds))
    .option('--metrics <host:port>', 'with --from: serve the lazy-delivery counters as Prometheus text over HTTP')
    .addHelpText('after', `
The image's kernel and initrd are found inside it (/boot/vmlinuz-VERSION with its initrd, the
newest VERSION, else the /vmlinuz and /initrd.img links; symlinks are followed inside the image
only), copied to a private temporary directory and booted directly by qemu: images need no boot
loader. The disk is the image served over NBD on a private Unix socket (what "vmdn nbd" serves:
reads verified, writes to an overlay), attached as virtio, so the root is /dev/vdaN for the
partition that holds the OS. KVM is used when /dev/kvm can be opened; otherwise qemu emulates
(TCG), slower. No network unless you ask for one (-- -nic user).

Console: on a terminal the VM's ttyS0 is your terminal (Ctrl-A X quits qemu, Ctrl-A C its
monitor); otherwise the console text goes to stdout. With --json the console goes to stderr and
one JSON document to stdout when the run ends: matched, msToKernel, msToFirstRead, msToMatch,
the kernel and initrd read, and counters (guestBytesRead; with --from also demandBytes,
prefilledBytes... taken at the match). Temporary files, qemu and the server are gone when vmdn exits.

Exit status: 0 when --until matched (or the VM powered off), 9 on --timeout, 6 if qemu died first.

Examples:
  vmdn boot debian:12                                      boot it, console on this terminal
  vmdn boot debian:12 --from https://origin.example --cache ~/.cache/vmdn
  vmdn boot debian:12 --from https://origin.example --peer http://site-b:8080   objects from a peer site first
  vmdn boot debian:12 --until 'login:' --timeout 300 --json    time a boot to the login prompt
  vmdn boot debian:12 --overlay debian.ovl -- -nic user        keep writes; user-mode network`)
    .addHelpText('after', TRUST_HELP)
    .action(action(async (image: string, extra: string[], o: BootOptions) => {
      checkServeOptions(o);
      if ((o.trust || o.trustDir) && !o.from) throw new VmdnError('E_USAGE', '--trust and --trust-dir go with --from URL');
      if ((o.peer.length || o.peers) && !o.from) throw new VmdnError('E_USAGE', '--peer and --peers go with --from URL');
      const peers = o.from ? [...o.peer, ...(o.peers ? readPeerFile(o.peers) : [])] : undefined;
      if (extra.length && !process.argv.includes('--')) throw new VmdnError('E_USAGE', `unexpected argument ${extra[0]}: qemu arguments go after --`);
      const until = o.until !== undefined ? untilPattern(o.until) : undefined;
      const metrics = o.metrics ? parseListen(o.metrics) : undefined;
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      const interactive = !o.json && !until && !!process.stdout.isTTY && !!process.stdin.isTTY;
      try {
        const r = await boot({
          image, store: o.store, from: o.from, trust: o.from ? openTrust(o) : undefined, token: o.from ? readToken(o.tokenFile) : undefined, cache: o.cache, fill: o.fill, profile: o.profile, recordProfile: o.recordProfile, overlay: o.overlay, readOnly: o.readonly, metrics, peers,
          memoryMiB: o.memory, cpus: o.cpus, append: o.append, until, timeoutMs: o.timeout !== undefined ? o.timeout * 1000 : undefined,
          qemuArgs: extra, console: o.json ? process.stderr : interactive ? 'inherit' : process.stdout, signal: stop.signal,
          onStatus: (line) => process.stderr.write(`vmdn boot: ${safe(line)}\n`),
        });
        if (o.json) return printJson(r);
        const c = r.counters as Record<string, number>;
        const lazy = 'demandBytes' in c ? `, fetched on demand ${humanBytes(c.demandBytes!)} (${c.demandObjects} objects), by the fill ${humanBytes(c.prefilledBytes!)}` : '';
        if (r.matched) process.stderr.write(`\nvmdn boot: matched /${safe(until!.source)}/ after ${(r.msToMatch! / 1000).toFixed(1)} s; guest read ${humanBytes(c.guestBytesRead!)}${lazy}\n`);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    }));
}
