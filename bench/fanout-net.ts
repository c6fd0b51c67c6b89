/**
 * The fan-out runs' network: one network namespace per site, each with its
 * own veth pair to the host and `tc` tbf on both ends (netns.ts's Link, one
 * per site), and the origin in a namespace of its own, unrestricted, so its
 * veth's tx counter is the origin's wire egress. The host routes between the
 * /30s (ip_forward on for the run, restored after): site-to-site traffic
 * (P2P) crosses the sender's uplink and the receiver's downlink, as between
 * real sites.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { Link, type LinkConfig } from './netns.js';

/** Site i (0-based, < 200) and the origin (200): 10.214.I.0/30, .1 on the host, .2 in the namespace. */
export function siteConfig(i: number | 'origin'): LinkConfig {
  const n = i === 'origin' ? 200 : i;
  if (!(n >= 0 && n <= 200)) throw new Error(`site ${i}: at most 200 sites`);
  const tag = i === 'origin' ? 'o' : String(i);
  return { ns: `vmdnsc${tag}`, hostIf: `vmdnsh${tag}`, nsIf: `vmdnsn${tag}`, hostIp: `10.214.${n}.1`, nsIp: `10.214.${n}.2`, prefix: 30 };
}

/** Route the namespace's traffic to the other namespaces through the host. */
export const routeCommand = (c: LinkConfig) => ['ip', '-n', c.ns, 'route', 'add', 'default', 'via', c.hostIp];

const FORWARD = '/proc/sys/net/ipv4/ip_forward';

function sh(argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')}: ${(r.stderr || String(r.error)).trim()}`);
}

const counter = (path: string) => Number(fs.readFileSync(path, 'utf8').trim());

export class FanoutNet {
  readonly origin: Link;
  readonly sites: Link[] = [];
  private forwardWas: string | undefined;

  constructor(readonly n: number, readonly bps: number, onSignal?: () => void) {
    // one exit and signal listener per Link: 17 links are more than node's default warning level
    process.setMaxListeners(Math.max(process.getMaxListeners(), 4 * (n + 2)));
    this.origin = new Link(siteConfig('origin'), { onSignal });
    for (let i = 0; i < n; i++) this.sites.push(new Link(siteConfig(i), { onSignal }));
  }

  setup(): void {
    this.forwardWas ??= fs.readFileSync(FORWARD, 'utf8').trim();
    try {
      fs.writeFileSync(FORWARD, '1');
      for (const l of [this.origin, ...this.sites]) {
        l.setup();
        sh(routeCommand(l.c));
      }
      for (const s of this.sites) s.setRate(this.bps);
    } catch (e) {
      this.teardown();
      throw e;
    }
  }

  /** Bytes the origin's namespace sent (its whole egress, headers included). */
  originTxBytes(): number {
    return this.origin.serverTxBytes();
  }

  /** Bytes that entered site i's namespace (its downlink: the host side's tx). */
  siteRxBytes(i: number): number {
    return counter(`/sys/class/net/${this.sites[i]!.c.hostIf}/statistics/tx_bytes`);
  }

  /** Bytes that left site i's namespace (its uplink: what its peer served others). */
  siteTxBytes(i: number): number {
    return this.sites[i]!.serverTxBytes();
  }

  qdisc(): string {
    return this.sites[0]?.qdisc() ?? '';
  }

  teardown(): void {
    for (const l of [...this.sites, this.origin]) l.teardown();
    if (this.forwardWas !== undefined) {
      fs.writeFileSync(FORWARD, this.forwardWas);
      this.forwardWas = undefined;
    }
  }
}
