/**
 * The scale benchmark's pure parts (issue 17): the per-site network's
 * addresses and routes, what bound a run, the targets computed from the
 * measured numbers, and the section's settings.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { routeCommand, siteConfig } from '../../bench/fanout-net.js';
import { boundBy } from '../../bench/fanout.js';
import { renderScale, scaleLimits, scaleTargets, s3CostLine, type FanoutRun, type ScaleResult, type StoreRun } from '../../bench/scale-report.js';
import { scaleOptsFromEnv } from '../../bench/scale.js';

test('every site and the origin get their own namespace, interfaces (<= 15 chars) and /30; sites route through the host', () => {
  const cs = [...Array.from({ length: 16 }, (_, i) => siteConfig(i)), siteConfig('origin')];
  for (const k of ['ns', 'hostIf', 'nsIf', 'hostIp', 'nsIp'] as const) assert.equal(new Set(cs.map((c) => c[k])).size, cs.length, k);
  for (const c of cs) {
    assert.ok(c.hostIf.length <= 15 && c.nsIf.length <= 15);
    assert.equal(c.hostIp.split('.').slice(0, 3).join('.'), c.nsIp.split('.').slice(0, 3).join('.'));
    assert.deepEqual(routeCommand(c), ['ip', '-n', c.ns, 'route', 'add', 'default', 'via', c.hostIp]);
  }
  assert.throws(() => siteConfig(201), /200 sites/);
});

const run = (over: Partial<FanoutRun>): FanoutRun => ({
  link: '100mbit', n: 1, mode: 'origin', imageBytes: 1.9e8, seconds: 20, siteSeconds: [20], originObjectBytes: 1.9e8,
  cpu: { clients: 5, origin: 1, edges: 0 }, loadavg: [1, 1, 1], errors: [], ...over,
});

test('bound by: a link above 70 % of its rate, the cores above 80 %, a load above the cores, else neither', () => {
  assert.match(boundBy(run({ linkUse: 0.9 }), 2), /^link \(90 %/);
  assert.match(boundBy(run({ seconds: 10, cpu: { clients: 15, origin: 2, edges: 1 } }), 2), /^CPU \(90 % of 2 cores\)/);
  assert.match(boundBy(run({ linkUse: 0.9, seconds: 10, cpu: { clients: 17, origin: 1, edges: 0 } }), 2), /link .* and CPU/);
  assert.match(boundBy(run({ linkUse: 0.3, loadavg: [9, 5, 3] }), 2), /CPU, contended .*load 9\.0/);
  assert.match(boundBy(run({ linkUse: 0.3 }), 2), /^neither/);
  assert.equal(boundBy(run({ seconds: null }), 2), 'n/a');
});

const store = (kind: 'local' | 's3', importS: number, pullS: number): StoreRun => ({
  kind,
  import: { seconds: importS, cpuSeconds: 8, storeCpuSeconds: kind === 's3' ? 4 : 0, dataBytes: 5.4e8, objects: 14671, storedBytes: 1.9e8, ...(kind === 's3' ? { rgw: { requests: 40, gets: 0, getBytes: 0, puts: 32, putBytes: 1.9e8 } } : {}) },
  ...(kind === 's3' ? { bucket: [{ kind: 'pack', objects: 15, bytes: 1.89e8 }, { kind: 'pack index', objects: 15, bytes: 1e6 }] } : {}),
  pulls: [
    { seconds: pullS * 2, cpuSeconds: 4, serverCpuSeconds: 1, storeCpuSeconds: 0, bytes: 1.9e8, objects: 14671, originObjectBytes: 1.9e8 },
    { seconds: pullS, cpuSeconds: 4, serverCpuSeconds: 1, storeCpuSeconds: 0, bytes: 1.9e8, objects: 14671, originObjectBytes: 1.9e8, ...(kind === 's3' ? { rgw: { requests: 120, gets: 110, getBytes: 1.9e8, puts: 0, putBytes: 0 } } : {}) },
  ],
});
const load = { at: 't', uptime: 'up', loadavg: [1, 2, 3] };
const result = (over: Partial<ScaleResult> = {}): ScaleResult => ({
  startedAt: 'a', finishedAt: 'b', seconds: 600, cores: 2, load: { start: load, end: load }, image: 'base', imageBytes: 1.9e8,
  stores: { local: store('local', 8, 4), s3: store('s3', 16, 7) }, fanout: [
    run({}),
    run({ n: 16, mode: 'origin', seconds: 300, originObjectBytes: 16 * 1.9e8 }),
    run({ n: 4, mode: 'p2p', originObjectBytes: 1.2 * 1.9e8 }),
    run({ n: 16, mode: 'p2p', seconds: 45, originObjectBytes: 2 * 1.9e8 }),
  ], problems: [], ...over,
});

test('targets: S3/local throughput >= 0.5x (fastest pull), P2P origin egress <= 1.5 images per N, 16 sites <= 2x one site', () => {
  const t = scaleTargets(result());
  const by = (re: RegExp) => t.find((x) => re.test(x.target))!;
  assert.equal(by(/^import/).met, true); // 8/16 = 0.5
  assert.match(by(/^import/).measured, /= 0\.50x/);
  assert.equal(by(/^cold pull/).met, true); // 4/7 of the fastest pulls, not the slow first ones
  assert.match(by(/^cold pull/).measured, /= 0\.57x/);
  assert.equal(by(/P2P, 4 sites/).met, true);
  assert.equal(by(/P2P, 16 sites/).met, false);
  assert.equal(by(/^P2P: time for 16/).met, false); // 45 / 20
  assert.equal(by(/^origin only.*time for 16/).met, null); // shown, not judged
  const ok = scaleTargets(result({ fanout: [run({}), run({ n: 16, mode: 'p2p', seconds: 39 })] }));
  assert.equal(ok.find((x) => /^P2P: time/.test(x.target))!.met, true);
  // a run with failed pulls or not run at all is not a verdict
  const failed = scaleTargets(result({ fanout: [run({}), run({ n: 16, mode: 'p2p', seconds: 30, errors: ['site 3: exit 8'] }), run({ n: 8, mode: 'p2p', seconds: null, originObjectBytes: null, note: 'not run (needs --peer)' })] }));
  assert.ok(failed.filter((x) => /P2P/.test(x.target)).every((x) => x.met === null));
  assert.match(failed.find((x) => /8 sites/.test(x.target))!.measured, /needs --peer/);
});

test('the S3 cost line counts PUTs, packs and ranged GETs; the report has every run as a row', () => {
  const line = s3CostLine(result().stores!);
  assert.match(line, /32 PUTs/);
  assert.match(line, /15 pack \(12\.0 MiB each\)/);
  assert.match(line, /110 GETs/);
  const md = renderScale(result({ fanout: [...result().fanout, run({ n: 8, mode: 'p2p', seconds: null, note: 'not run (needs --peer)' })] }));
  assert.match(md, /^## Scale/);
  assert.equal(md.split('\n').filter((l) => /^\| (lo|100mbit) \|/.test(l)).length, 5);
  assert.match(md, /not run \(needs --peer\)/);
  // why P2P fell back to the origin: failed requests, dropped peers, objects that came from the origin instead
  const p2p = renderScale(result({ fanout: [run({ n: 8, mode: 'p2p', peerBytes: 3e7, peerFailures: 142, peersDropped: 64, fellBack: 100472 })] }));
  assert.match(p2p, /142 failed requests, 64 of 64 pull-peer pairs dropped, 100472 objects fell back to the origin/);
  assert.match(s3CostLine({ local: store('local', 8, 4), s3: null, s3Error: 'no radosgw' }), /no figures/);
});

test('settings: defaults, lists, and unknown parts, links, modes or site counts refused', () => {
  const d = scaleOptsFromEnv('/c', {});
  assert.deepEqual([d.image, d.parts, d.sites, d.links, d.modes, d.pulls], ['base', ['stores', 'fanout'], [1, 4, 8, 16], ['lo', '100mbit'], ['origin', 'p2p'], 2]);
  assert.deepEqual(scaleOptsFromEnv('/c', { BENCH_SCALE_SITES: '1, 4', BENCH_SCALE_LINKS: 'lo' }).sites, [1, 4]);
  assert.throws(() => scaleOptsFromEnv('/c', { BENCH_SCALE_PARTS: 'boots' }), /unknown part/);
  assert.throws(() => scaleOptsFromEnv('/c', { BENCH_SCALE_LINKS: '1gbit' }), /unknown link/);
  assert.throws(() => scaleOptsFromEnv('/c', { BENCH_SCALE_MODES: 'bittorrent' }), /unknown mode/);
  assert.throws(() => scaleOptsFromEnv('/c', { BENCH_SCALE_SITES: '0' }), /1\.\.64/);
});

test('limit: the 16-site P2P run cannot end before its CPU seconds / cores, nor before its busiest link carried its bytes', () => {
  // 16 sites: 60 + 2 + 18 = 80 CPU s on 2 cores = 40 s; the busiest link: 1.9e8 bytes at 100 Mbit/s = 15.2 s; one site 20 s
  const r = result({ fanout: [run({}), run({ n: 16, mode: 'p2p', seconds: 45, cpu: { clients: 60, origin: 2, edges: 18 }, maxSiteBytes: 1.9e8 })] });
  const [lim] = scaleLimits(r);
  assert.match(lim!.measured, /max\(80\.0 CPU s \/ 2 cores = 40\.0 s, 15\.2 s\) \/ 20\.0 s = 2\.00x; measured 2\.25x/);
  assert.equal(lim!.met, null);
  assert.match(renderScale(r), /limit \(no verdict\)/);
  // a link slower than the cores: the link is the limit
  const slow = scaleLimits(result({ fanout: [run({}), run({ n: 16, mode: 'p2p', seconds: 60, cpu: { clients: 10, origin: 1, edges: 1 }, maxSiteBytes: 6e8 })] }));
  assert.match(slow[0]!.measured, /= 2\.40x/); // 48 s / 20 s
  assert.deepEqual(scaleLimits(result({ fanout: [run({})] })), [], 'no 16-site run, no limit');
});
