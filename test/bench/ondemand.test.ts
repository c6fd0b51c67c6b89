/**
 * The on-demand benchmark's pure parts: the netns/veth/tc command builder and
 * the targets computed from measured numbers (issue 13's thresholds).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_LINK, inNs, parseRate, rateCommands, setupCommands, tbfArgs, teardownCommands } from '../../bench/netns.js';
import { medianRound, onDemandTargets, onDemandLimits, ratio, renderOnDemand, type OnDemandResult, type PullRun } from '../../bench/ondemand-report.js';
import { onDemandOptsFromEnv } from '../../bench/ondemand.js';

test('rates parse to bits per second; nonsense and absurd rates are refused', () => {
  assert.equal(parseRate('100mbit'), 1e8);
  assert.equal(parseRate('1gbit'), 1e9);
  assert.equal(parseRate('2.5Gbit'), 2.5e9);
  for (const bad of ['100', '100mb', 'fast', '1kbit', '1000gbit', '']) assert.throws(() => parseRate(bad), /rate/);
});

test('tbf holds 10 ms at the rate, never less than one 64 KiB GSO packet, rate in kbit', () => {
  assert.deepEqual(tbfArgs(1e8), ['tbf', 'rate', '100000kbit', 'burst', '125000', 'latency', '50ms']);
  assert.deepEqual(tbfArgs(1e9), ['tbf', 'rate', '1000000kbit', 'burst', '1250000', 'latency', '50ms']);
  assert.equal(tbfArgs(1e6)[4], '65536');
});

test('the link: namespace, veth pair with one end inside, addresses on both ends, lo up; rate on both ends; teardown by namespace', () => {
  const c = DEFAULT_LINK;
  const setup = setupCommands(c);
  assert.deepEqual(setup[0], ['ip', 'netns', 'add', c.ns]);
  assert.deepEqual(setup[1], ['ip', 'link', 'add', c.hostIf, 'type', 'veth', 'peer', 'name', c.nsIf, 'netns', c.ns]);
  assert.ok(setup.some((s) => s.join(' ') === `ip addr add ${c.hostIp}/${c.prefix} dev ${c.hostIf}`));
  assert.ok(setup.some((s) => s.join(' ') === `ip -n ${c.ns} addr add ${c.nsIp}/${c.prefix} dev ${c.nsIf}`));
  assert.ok(setup.some((s) => s.join(' ') === `ip -n ${c.ns} link set lo up`));
  const rate = rateCommands(c, 1e8);
  assert.deepEqual(rate.map((r) => r.slice(0, 6).join(' ')), [`tc qdisc replace dev ${c.hostIf} root`, `tc -n ${c.ns} qdisc replace dev`]);
  assert.ok(rate.every((r) => r.includes('tbf') && r.includes('100000kbit')));
  assert.ok(rateCommands(c, null).every((r) => r.includes('del')));
  assert.deepEqual(teardownCommands(c)[0], ['ip', 'netns', 'del', c.ns]);
  assert.deepEqual(inNs(c, ['nginx', '-v']), ['ip', 'netns', 'exec', c.ns, 'nginx', '-v']);
  // the two ends are on the same small subnet, not the same address
  assert.notEqual(c.hostIp, c.nsIp);
  assert.equal(c.hostIp.split('.').slice(0, 3).join('.'), c.nsIp.split('.').slice(0, 3).join('.'));
});

const pull = (seconds: number, extra: Partial<PullRun> = {}): PullRun => ({ seconds, maxRssBytes: 1e8, bytes: 1.9e8, identical: true, ...extra });
const load = { at: 't', uptime: 'up', loadavg: [1, 2, 3] };
function result(over: Partial<OnDemandResult> = {}): OnDemandResult {
  return {
    startedAt: 'a', finishedAt: 'b', seconds: 300, quick: false, load: { start: load, end: load }, image: 'base', virtualBytes: 3221225472, storedBytes: 1.89e8, fullPullBytes: 2e8,
    pulls: [
      { link: 'lo', bps: null, vmdn: pull(4), curlZstd: pull(3), casync: pull(9) },
      { link: '1gbit', bps: 1e9, vmdn: pull(4), curlZstd: pull(3.9), casync: pull(9) },
      { link: '100mbit', bps: 1e8, vmdn: pull(16), curlZstd: pull(16.5), casync: pull(20) },
    ],
    nbd: { link: 'lo', vmdn: { seconds: 10, peakRssBytes: 1.2e8, identical: true }, qemuNbd: { seconds: 6, identical: true } },
    lazy: { link: '1gbit', seconds: 20, peakRssBytes: 3.1e8, identical: true },
    boots: {
      local: { ms: 30_000 },
      cold: { ms: 40_000, link: '100mbit', originBytes: 2.9e7, counters: { demandBytes: 2e7 } },
      profiled: { ms: 33_000, link: '100mbit' },
    },
    problems: [],
    ...over,
  };
}
const verdicts = (r: OnDemandResult) => Object.fromEntries(onDemandTargets(r).map((t) => [t.target.replace(/ \(casync.*\)$/, ''), t.met]));

test('targets: each of issue 13 is judged from the numbers against its threshold', () => {
  const v = verdicts(result());
  assert.deepEqual(v, {
    'bytes before login, cold site, no profile / stored bytes of the objects the guest read': true, // 29/20 = 1.45
    'bytes before login, cold site, no profile / full pull of base': true, // 14.5 %
    'time to login with a profile, fresh site at 100mbit / boot from a local raw file': true, // 1.1
    'time to login with a profile / (full vmdn pull at 100mbit + local boot)': false, // 33 / (16 + 30) = 0.72 > 0.5
    'full cold pull of base on lo: vmdn pull / curl|zstd': true, // 1.33 <= 1.5 on loopback
    'full cold pull of base on 1gbit: vmdn pull / curl|zstd': false, // 1.03 > 1.0
    'full cold pull of base on 100mbit: vmdn pull / curl|zstd': true,
    'NBD throughput of a fully cached image (qemu-img convert): vmdn nbd / qemu-nbd of the raw file': false, // 0.6
    'peak RSS of vmdn nbd (cached throughput run; lazy run)': false, // the lazy run's 310 MB
  } as Record<string, boolean>);
  // and the same boot passes once the pull it is compared with is slow enough
  const slow = result();
  slow.pulls[2]!.vmdn = pull(40);
  assert.equal(verdicts(slow)['time to login with a profile / (full vmdn pull at 100mbit + local boot)'], true); // 33 / 70
});

test('limits: the kernel and initrd share of a full pull, and a boot no faster than a local one, beside the targets', () => {
  const r = result();
  r.boots.bootFiles = { rawBytes: 3e7, storedBytes: 2.8e7 };
  const lim = Object.fromEntries(onDemandLimits(r).map((t) => [t.target.split(':')[0], t.measured]));
  const full = r.fullPullBytes ?? r.storedBytes;
  assert.match(lim['limit of the bytes before login']!, new RegExp(`= ${(2.8e7 / full! * 100).toFixed(1)} %`));
  assert.match(lim['limit of the time to login with a profile / (full pull + local boot)']!, /30\.0 s \/ 46\.0 s = 0\.65x/); // 30 / (16 + 30)
  assert.match(renderOnDemand(r), /limit \(no verdict\)/);
  assert.equal(onDemandLimits(result({ boots: {} })).length, 0, 'nothing measured, no limit');
});

test('targets: what was not measured (no boots, a failed pull) is "not measured", never met', () => {
  const r = result({ boots: { note: 'no qemu' }, nbd: null, lazy: null });
  r.pulls[1]!.vmdn = pull(NaN, { error: 'exit 1', identical: null });
  const t = onDemandTargets(r);
  for (const x of t.filter((x) => /login|NBD|RSS|1gbit/.test(x.target))) assert.equal(x.met, null, x.target);
  assert.equal(ratio(1, 0), null);
  assert.equal(ratio(undefined, 2), null);
  assert.equal(ratio(3, 2), 1.5);
  const md = renderOnDemand(r);
  assert.match(md, /^## On-demand delivery \(issue 13\)/);
  assert.match(md, /not measured/);
  assert.match(md, /\| 1gbit \| vmdn pull \| failed: exit 1 \|/);
  assert.match(md, /no qemu/);
  assert.doesNotMatch(md, /\| boot \| link \|/);
  assert.match(renderOnDemand(result({ boots: {} })), /Not run in this run/);
});

test('a fresh-site boot after a failed recording is not judged as a boot with a profile', () => {
  const r = result();
  r.boots.record = { ms: null, error: 'exit 3: E_UNSUPPORTED' };
  const t = onDemandTargets(r).filter((x) => x.target.startsWith('time to login with a profile'));
  assert.equal(t.length, 2);
  for (const x of t) assert.equal(x.met, null, x.target);
  assert.match(renderOnDemand(r), /\| vmdn boot, fresh site, fill on \(no profile: the recording failed\) \| 100mbit \| 33\.0 \|/);
});

test('the report states the load and every link with the three tools', () => {
  const r = result();
  r.pulls[0]!.vmdn = pull(4, { cpuSeconds: 8.5, serverCpuSeconds: 2.5 });
  const md = renderOnDemand(r);
  assert.match(md, /\| lo \| vmdn pull \| 4\.0 \| 8\.5 \+ 2\.5 \| 190\.0 \|/);
  assert.match(md, /Load average \(1\/5\/15 min\) at start 1 \/ 2 \/ 3, at end 1 \/ 2 \/ 3/);
  for (const l of ['lo', '1gbit', '100mbit']) for (const tool of ['vmdn pull', 'curl \\\\\\| zstd -d', 'casync extract']) assert.match(md, new RegExp(`\\| ${l} \\| ${tool}`));
  // every table row has as many cells as its header: a | inside a cell is escaped
  for (const table of md.split('\n\n').filter((b) => b.startsWith('| '))) {
    const cells = (l: string) => l.split(/(?<!\\)\|/).length;
    const lines = table.split('\n').filter(Boolean);
    for (const l of lines) assert.equal(cells(l), cells(lines[0]!), l);
  }
  assert.match(md, /\| vmdn boot with the profile, fresh site \| 100mbit \| 33\.0 \|/);
});

test('options from the environment: quick mode, links, boots, work dir', () => {
  const o = onDemandOptsFromEnv('/c', { BENCH_OD_QUICK: '1', BENCH_OD_LINKS: 'lo, 100mbit', BENCH_OD_BOOTS: '0', BENCH_OD_WORKDIR: '/w', BENCH_DROP_CACHES: '0' });
  assert.deepEqual(o, { corpusDir: '/c', workDir: '/w', quick: true, links: ['lo', '100mbit'], boots: false, dropCaches: false });
  assert.deepEqual(onDemandOptsFromEnv('/c', {}), { corpusDir: '/c', workDir: '/var/tmp/vmdn-odbench', quick: false, dropCaches: true });
});

test('repeated runs: the median round is shown with every round beside it; a failed round counts as the slowest', () => {
  const m = medianRound([pull(3.1), pull(2.2), pull(2.6)]);
  assert.equal(m.seconds, 2.6);
  assert.deepEqual(m.runs, [3.1, 2.2, 2.6]);
  // a failed round sorts last, however fast it failed: the median of 2 s, 4 s and a failure is 4 s
  assert.equal(medianRound([pull(1, { error: 'exit 1' }), pull(2), pull(4)]).seconds, 4);
  assert.equal(medianRound([pull(5), pull(1)]).seconds, 1, 'the lower middle of an even count');
  assert.throws(() => medianRound([]), /no rounds/);
  const r = result();
  r.pulls[0]!.vmdn = medianRound([pull(4.2), pull(3.5), pull(3.9)]);
  r.nbdWarm = { vmdn: { seconds: 2, identical: true }, qemuNbd: { seconds: 1, identical: true } };
  const md = renderOnDemand(r);
  assert.match(md, /\| lo \| vmdn pull \| 3\.9 \(median of 4\.2, 3\.5, 3\.9\) \|/);
  const warm = onDemandTargets(r).find((t) => t.target.includes('page cache warm'));
  assert.ok(warm, 'the warm NBD comparison is a target row');
  assert.equal(warm!.met, false, '1 s against 2 s is 0.5x, under 0.7x');
  assert.match(md, /qemu-nbd -r of the raw file, page cache warm/);
});
