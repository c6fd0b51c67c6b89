/** CLI pieces of `--peer` / `--peers` (docs/p2p.md): the option collector and the summary line. */
import type { P2pStats } from '../../net/client/pull.js';
import { humanBytes } from '../../util/size.js';
import { safe } from '../output.js';
export { readPeerFile } from '../../net/client/peers.js';

/** Commander collector of a repeatable option. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function p2pLine(p: P2pStats): string {
  const used = p.peers.filter((x) => x.objects > 0).length;
  const each = p.peers.map((x) => `${safe(x.url)} ${x.objects} objects ${humanBytes(x.bytes)}${x.failures ? `, ${x.failures} failed` : ''}${x.corrupt ? `, ${x.corrupt} CORRUPT (dropped)` : ''}`);
  return `peers: ${humanBytes(p.bytes)} in ${p.objects} objects from ${used} of ${p.peers.length} peers, ` +
    `${humanBytes(p.origin.bytes)} in ${p.origin.objects} objects from the origin; ${p.failures} peer failures, ${p.corrupt} corrupt objects\n    ${each.join('\n    ')}`;
}
