/**
 * The `trust` section of `npm run bench` (issue 16): what signed records and
 * scoped tokens cost the origin per request against serving a 32 KiB object
 * (bench/signed-records.ts, bench/auth.ts: CPU time, the machine is shared),
 * pull time with and without --trust, and a `vmdn serve` under 500
 * concurrent clients with a slowloris share (bench/trust-load.ts).
 *
 *   BENCH_TRUST_CLIENTS (500) BENCH_TRUST_SLOW (100) BENCH_TRUST_SECONDS (10: keep-alive phase; the slowloris phase is 10 s longer)
 *   BENCH_TRUST_REQUESTS (1000 GETs per overhead round) BENCH_TRUST_WORKDIR (/var/tmp/vmdn-trustbench)
 */
import { benchSignedRecords, type SignedRecordsResult } from './signed-records.js';
import { benchAuth, type AuthResult } from './auth.js';
import { benchOriginLoad, type LoadOptions, type LoadResult } from './trust-load.js';

export interface TrustOptions { requests: number; load: Omit<LoadOptions, 'log'> }
export interface TrustResult { signed: SignedRecordsResult; auth: AuthResult; load: LoadResult; targets: { what: string; value: string; target: string; met: boolean | null }[] }

export function trustOptsFromEnv(env: NodeJS.ProcessEnv): TrustOptions {
  const n = (k: string, d: number) => (Number(env[`BENCH_TRUST_${k}`]) > 0 ? Number(env[`BENCH_TRUST_${k}`]) : d);
  return {
    requests: n('REQUESTS', 1000),
    load: { workDir: env.BENCH_TRUST_WORKDIR ?? '/var/tmp/vmdn-trustbench', clients: n('CLIENTS', 500), slowloris: n('SLOW', 100), seconds: n('SECONDS', 10), images: 4, imageMiB: 4 },
  };
}

const MB = 1e6;
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const met = (m: boolean | null) => (m === null ? 'reported' : m ? '**met**' : '**not met**');

export async function runTrustBench(o: TrustOptions, log: (s: string) => void): Promise<{ result: TrustResult; markdown: string }> {
  log('[trust] signature overhead and pulls with/without --trust');
  const signed = await benchSignedRecords({ requests: o.requests, rounds: 3, pulls: 3 });
  log('[trust] token overhead');
  const auth = await benchAuth({ requests: o.requests, rounds: 3, calls: 30_000 });
  const load = await benchOriginLoad({ ...o.load, log: (s) => log(`[trust] ${s}`) });

  const base = auth.setups[0]!.us;
  const call = (label: string) => auth.calls.find((c) => c.label.startsWith(label))?.us ?? NaN;
  const tokenCallsPct = (100 * (call('authenticate (scoped') + call('visibility'))) / base;
  const [plain, slow] = load.phases as [LoadResult['phases'][0], LoadResult['phases'][0]];
  const answered = slow.errors === 0 && slow.requests > 0 && slow.requestsPerSecond >= plain.requestsPerSecond / 2;
  const targets: TrustResult['targets'] = [
    { what: 'signature: signer work per name request (reused signature) vs a 32 KiB object GET', value: `${signed.signerReusedUs.toFixed(2)} µs = ${signed.reusedVsObjectPercent.toFixed(3)} % of ${f1(signed.objectGet32KiBUs)} µs`, target: '< 1 %', met: signed.reusedVsObjectPercent < 1 },
    { what: 'token: authenticate (scoped token) + visibility of the object, the calls alone', value: `${(call('authenticate (scoped') + call('visibility')).toFixed(2)} µs = ${tokenCallsPct.toFixed(2)} % of ${f1(base)} µs`, target: '< 1 %', met: tokenCallsPct < 1 },
    ...auth.setups.slice(1).map((s) => ({ what: `token, whole GET (origin CPU, median of 3, noisy on a shared machine): ${s.name}`, value: `${f1(s.us)} µs (${s.percentOverBase >= 0 ? '+' : ''}${s.percentOverBase.toFixed(2)} %; runs ${s.runs.map(f1).join(', ')})`, target: '< 1 % (run-to-run noise here is larger: see the calls alone)', met: null })),
    { what: 'pull 8 MiB, median of 3: without / with --trust (wall)', value: `${f1(signed.pull8MiB.plainWallMs)} / ${f1(signed.pull8MiB.trustWallMs)} ms (CPU ${f1(signed.pull8MiB.plainCpuMs)} / ${f1(signed.pull8MiB.trustCpuMs)} ms)`, target: '', met: null },
    { what: `origin peak RSS (VmHWM) under ${load.clients} clients + ${load.slowloris} slow sockets`, value: `${f1(load.peakRssBytes / MB)} MB`, target: '< 300 MB', met: load.peakRssBytes < 300 * MB },
    { what: 'normal clients answered with the slowloris share (no errors, ≥ half the req/s)', value: `${slow.errors} errors, ${slow.requestsPerSecond.toFixed(0)} vs ${plain.requestsPerSecond.toFixed(0)} req/s`, target: 'all answered', met: answered },
  ];
  const md = [
    '## Trust: signatures, tokens, origin under load',
    '',
    `Signed records and scoped tokens: origin CPU time per request (process.cpuUsage, ${o.requests} keep-alive GETs per round; bench/signed-records.ts, bench/auth.ts). ` +
      `Load: a real \`vmdn serve\` (--sign-key, --private-prefix team/, one scoped read token) on ${load.objects} objects of 32 KiB in ${o.load.images} images; ` +
      `a separate Node load generator with ${load.clients} keep-alive clients (1 in 5 with the token on the private image; 4 object GETs per name GET), after a 3 s warm-up, ${load.seconds} s without and ${load.seconds + 10} s with ` +
      `a slowloris share of ${load.slowloris} sockets (half sending headers a byte every 2 s, half a body a byte every 2 s; reconnected when dropped). ` +
      `Load average (2 cores, shared with other jobs): ${load.loadavg.start.map((x) => x.toFixed(1)).join(', ')} at the start of the load test, ${load.loadavg.end.map((x) => x.toFixed(1)).join(', ')} at its end.`,
    '',
    '| measure | value | target | |',
    '|:--|--:|--:|:--|',
    ...targets.map((t) => `| ${t.what} | ${t.value} | ${t.target} | ${met(t.met)} |`),
    '',
    '| load phase | s | req/s | p50 ms | p99 ms | max ms | errors | slow sockets held / dropped | origin RSS peak in phase (MB) |',
    '|:--|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...load.phases.map((p) => `| ${p.name} | ${p.seconds} | ${p.requestsPerSecond.toFixed(0)} | ${f1(p.p50Ms)} | ${f1(p.p99Ms)} | ${f1(p.maxMs)} | ${p.errors}${p.errors ? ` (${Object.entries(p.errorKinds).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''} | ${p.slowSockets} / ${p.slowDropped} | ${f1(p.peakPhaseRssBytes / MB)} |`),
  ].join('\n');
  return { result: { signed, auth, load, targets }, markdown: md };
}
