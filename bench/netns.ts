/**
 * The benchmark's rate-limited link: a network namespace holding one end of a
 * veth pair (the servers run there), the other end in the host namespace (the
 * clients run here), and `tc` tbf on both ends' egress. Set up by the bench
 * itself as root; idempotent (a leftover namespace from a killed run is
 * removed first) and torn down on exit, SIGINT and SIGTERM.
 *
 * The command builders are pure (unit-tested); Link runs them.
 */
import { spawnSync } from 'node:child_process';

export interface LinkConfig {
  ns: string;
  /** veth end in the host namespace (the client side) */
  hostIf: string;
  /** veth end inside the namespace (the server side) */
  nsIf: string;
  hostIp: string;
  nsIp: string;
  prefix: number;
}

export const DEFAULT_LINK: LinkConfig = { ns: 'vmdnbench', hostIf: 'vmdnb0', nsIf: 'vmdnb1', hostIp: '10.213.77.2', nsIp: '10.213.77.1', prefix: 30 };

/** Link rates the section measures; `lo` is loopback in the host namespace (no veth, no tc). */
export const RATES: Record<string, number | null> = { lo: null, '1gbit': 1e9, '100mbit': 1e8 };

/** "100mbit", "1gbit", "2.5gbit", "500kbit" -> bits per second. */
export function parseRate(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)bit$/i.exec(s.trim());
  if (!m) throw new Error(`bad rate ${JSON.stringify(s)} (expected e.g. 100mbit, 1gbit)`);
  const v = Number(m[1]) * { k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase() as 'k' | 'm' | 'g'];
  if (!(v >= 1e5 && v <= 1e11)) throw new Error(`rate ${s} outside 100kbit..100gbit`);
  return v;
}

/**
 * tbf for `bps`: the bucket holds 10 ms at the rate (at least 64 KiB, so one
 * GSO super-packet fits and is not segmented), and packets wait at most 50 ms
 * in the queue, as on a real bottleneck.
 */
export function tbfArgs(bps: number): string[] {
  const burst = Math.max(65536, Math.round(bps / 8 / 100));
  return ['tbf', 'rate', `${Math.round(bps / 1000)}kbit`, 'burst', String(burst), 'latency', '50ms'];
}

/** Commands that create the namespace and the veth pair (after teardownCommands). */
export function setupCommands(c: LinkConfig): string[][] {
  return [
    ['ip', 'netns', 'add', c.ns],
    ['ip', 'link', 'add', c.hostIf, 'type', 'veth', 'peer', 'name', c.nsIf, 'netns', c.ns],
    ['ip', 'addr', 'add', `${c.hostIp}/${c.prefix}`, 'dev', c.hostIf],
    ['ip', 'link', 'set', c.hostIf, 'up'],
    ['ip', '-n', c.ns, 'addr', 'add', `${c.nsIp}/${c.prefix}`, 'dev', c.nsIf],
    ['ip', '-n', c.ns, 'link', 'set', c.nsIf, 'up'],
    ['ip', '-n', c.ns, 'link', 'set', 'lo', 'up'],
  ];
}

/** Commands that set (or, with null, remove) the rate on both ends. */
export function rateCommands(c: LinkConfig, bps: number | null): string[][] {
  if (bps === null) return [['tc', 'qdisc', 'del', 'dev', c.hostIf, 'root'], ['tc', '-n', c.ns, 'qdisc', 'del', 'dev', c.nsIf, 'root']];
  return [['tc', 'qdisc', 'replace', 'dev', c.hostIf, 'root', ...tbfArgs(bps)], ['tc', '-n', c.ns, 'qdisc', 'replace', 'dev', c.nsIf, 'root', ...tbfArgs(bps)]];
}

/** Deleting the namespace deletes its veth end, and with it the pair; the second command covers a pair left without one. */
export function teardownCommands(c: LinkConfig): string[][] {
  return [['ip', 'netns', 'del', c.ns], ['ip', 'link', 'del', c.hostIf]];
}

/** `argv` run inside the namespace (`ip netns exec` execs in place: the pid is the command's). */
export const inNs = (c: LinkConfig, argv: string[] = []) => ['ip', 'netns', 'exec', c.ns, ...argv];

function sh(argv: string[], mayFail = false): boolean {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0 && !mayFail) throw new Error(`${argv.join(' ')}: ${(r.stderr || String(r.error)).trim()}`);
  return r.status === 0;
}

/** Pids of the processes inside the namespace: only ours (the namespace is the bench's own). */
function nsPids(c: LinkConfig): number[] {
  const r = spawnSync('ip', ['netns', 'pids', c.ns], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n').filter(Boolean).map(Number) : [];
}

export class Link {
  private up = false;
  private readonly onExit = () => this.teardown();
  private readonly onSignal = (sig: NodeJS.Signals) => {
    this.opts.onSignal?.();
    this.teardown();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };

  /** opts.onSignal: run first on SIGINT/SIGTERM (end the clients in the host namespace) */
  constructor(readonly c: LinkConfig = DEFAULT_LINK, private readonly opts: { onSignal?: () => void } = {}) {}

  /** Fresh namespace and veth pair, no rate yet. */
  setup(): void {
    if (process.getuid?.() !== 0) throw new Error('the rate-limited link needs root (ip netns, tc)');
    this.teardown();
    process.on('exit', this.onExit);
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    this.up = true;
    try {
      for (const cmd of setupCommands(this.c)) sh(cmd);
    } catch (e) {
      this.teardown();
      throw e;
    }
  }

  setRate(bps: number | null): void {
    for (const cmd of rateCommands(this.c, bps)) sh(cmd, bps === null);
  }

  /** The qdisc as tc shows it, for the record. */
  qdisc(): string {
    return spawnSync('tc', ['-n', this.c.ns, 'qdisc', 'show', 'dev', this.c.nsIf], { encoding: 'utf8' }).stdout.trim();
  }

  /** Bytes sent by the server side (the namespace's veth end) so far. */
  serverTxBytes(): number {
    const r = spawnSync('ip', ['netns', 'exec', this.c.ns, 'cat', `/sys/class/net/${this.c.nsIf}/statistics/tx_bytes`], { encoding: 'utf8' });
    return Number(r.stdout.trim());
  }

  /** Kill what still runs in the namespace, delete it; safe to call twice or when nothing was set up. */
  teardown(): void {
    for (const pid of nsPids(this.c)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    for (const cmd of teardownCommands(this.c)) sh(cmd, true);
    if (this.up) {
      process.off('exit', this.onExit);
      process.off('SIGINT', this.onSignal);
      process.off('SIGTERM', this.onSignal);
      this.up = false;
    }
  }
}
