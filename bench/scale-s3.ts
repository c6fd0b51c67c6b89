/**
 * S3 store vs local store (issue 17): the same corpus image imported into a
 * local store and into an S3 store on a real Ceph RGW (scripts/ceph-rgw.sh:
 * one monitor, one memstore OSD, radosgw, all on this machine), then pulled
 * cold on loopback through `vmdn serve --store DIR` and `vmdn serve --store
 * s3://...`. RGW's own perf counters (admin socket) give the S3 requests
 * behind each step: PUTs of ~12 MiB pack objects on import, ranged GETs on
 * pull; the Ceph daemons' CPU is counted with the S3 side.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { cpuSecondsOf, timed } from './measure.js';
import { REPO, startVmdn, VMDN } from './net-procs.js';
import { S3 } from '../src/store/s3/client.js';
import { parseS3Url } from '../src/store/s3/location.js';
import { objectBytes } from './fanout.js';
import type { BucketKind, RgwCounters, StoreRun } from './scale-report.js';

const SCRIPT = path.join(REPO, 'scripts', 'ceph-rgw.sh');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    }).on('error', reject);
  });
}

/** The bench's RGW: like test/helpers/rgw.ts, plus what the bench reads (daemon pids, admin socket). */
export class BenchRgw {
  private constructor(readonly dir: string, readonly endpoint: string) {}

  static async start(dir: string): Promise<BenchRgw> {
    const env = { ...process.env, RGW_PORT: String(await freePort()), MON_PORT: String(await freePort()) };
    const out = execFileSync(SCRIPT, ['start', dir], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });
    const kv = Object.fromEntries(out.trim().split('\n').pop()!.split(/\s+/).map((w) => w.split('=', 2) as [string, string]));
    if (!kv.endpoint) throw new Error(`ceph-rgw.sh said: ${out}`);
    process.env.AWS_ACCESS_KEY_ID = kv.access;
    process.env.AWS_SECRET_ACCESS_KEY = kv.secret;
    process.env.AWS_REGION = 'us-east-1';
    return new BenchRgw(dir, kv.endpoint);
  }

  storeUrl(bucket: string): string {
    return `s3://${bucket}?endpoint=${encodeURIComponent(this.endpoint)}`;
  }

  /** CPU seconds of radosgw, the OSD and the monitor so far. */
  cpuSeconds(): number {
    return ['rgw', 'osd', 'mon'].reduce((a, p) => a + (cpuSecondsOf(Number(fs.readFileSync(path.join(this.dir, `${p}.pid`), 'utf8'))) || 0), 0);
  }

  counters(): RgwCounters {
    const r = spawnSync('ceph', ['--admin-daemon', path.join(this.dir, 'run', 'client.rgw.a.asok'), 'perf', 'dump'], { encoding: 'utf8' });
    const g = (JSON.parse(r.stdout) as { rgw: Record<string, number> }).rgw;
    return { requests: g.req!, gets: g.get!, getBytes: g.get_b!, puts: g.put!, putBytes: g.put_b! };
  }

  stop(): void {
    execFileSync(SCRIPT, ['stop', this.dir], { stdio: 'ignore' });
  }
}

/** What the bucket holds, by kind of object: packs (*.pack), their indexes (*.idx), the rest (names). */
export async function bucketContents(url: string): Promise<BucketKind[]> {
  const s3 = await S3.connect(parseS3Url(url));
  const by = new Map<string, BucketKind>();
  try {
    for await (const o of s3.list('')) {
      const kind = o.key.endsWith('.pack') ? 'pack' : o.key.endsWith('.idx') ? 'pack index' : 'other (names)';
      const k = by.get(kind) ?? { kind, objects: 0, bytes: 0 };
      k.objects++;
      k.bytes += o.size;
      by.set(kind, k);
    }
  } finally {
    s3.close();
  }
  return [...by.values()];
}

const diff = (a: RgwCounters, b: RgwCounters): RgwCounters => ({ requests: b.requests - a.requests, gets: b.gets - a.gets, getBytes: b.getBytes - a.getBytes, puts: b.puts - a.puts, putBytes: b.putBytes - a.putBytes });
const errOf = (code: number, stderr: string) => (code === 0 ? undefined : `exit ${code}: ${stderr.trim().split('\n').slice(-2).join(' | ').slice(0, 300)}`);

export interface StoreCompareOpts {
  corpusDir: string;
  workDir: string;
  image: string;
  /** cold pulls per store; the fastest counts (the machine is shared) */
  pulls: number;
  log: (s: string) => void;
}

/** Import then pull, for one store. `store` is a directory or an s3:// URL. */
export async function storeRun(o: StoreCompareOpts, kind: 'local' | 's3', store: string, rgw?: BenchRgw): Promise<StoreRun> {
  const tmp = path.join(o.workDir, 'tmp');
  fs.mkdirSync(tmp, { recursive: true });
  const side = () => ({ cpu: rgw?.cpuSeconds() ?? 0, c: rgw?.counters() });
  o.log(`${kind}: import ${o.image}.qcow2`);
  const s0 = side();
  const imp = await timed(process.execPath, [VMDN, 'import', path.join(o.corpusDir, `${o.image}.qcow2`), '--name', o.image, '--store', store, '--json', '--no-progress'], { tmpDir: tmp, timeoutMs: 20 * 60_000 });
  const s1 = side();
  const stats = imp.exitCode === 0 ? (JSON.parse(imp.stdout) as { stats: { dataBytes: number; newObjects: number; newStoredBytes: number } }).stats : undefined;
  const run: StoreRun = {
    kind,
    import: {
      seconds: imp.seconds, cpuSeconds: imp.cpuSeconds, storeCpuSeconds: s1.cpu - s0.cpu, dataBytes: stats?.dataBytes ?? NaN, objects: stats?.newObjects ?? NaN, storedBytes: stats?.newStoredBytes ?? NaN,
      ...(s0.c && s1.c ? { rgw: diff(s0.c, s1.c) } : {}), ...(imp.exitCode !== 0 ? { error: errOf(imp.exitCode, imp.stderrTail) } : {}),
    },
    pulls: [],
  };
  if (imp.exitCode !== 0) return run;
  if (kind === 's3') run.bucket = await bucketContents(store);
  const origin = await startVmdn(['serve', '--store', store, '--no-portal']);
  try {
    for (let k = 0; k < o.pulls; k++) {
      const cache = path.join(o.workDir, 'pull-cache');
      const out = path.join(o.workDir, 'pull-out.raw');
      fs.rmSync(cache, { recursive: true, force: true });
      fs.rmSync(out, { force: true });
      o.log(`${kind}: cold pull ${k + 1}/${o.pulls} through vmdn serve`);
      const b0 = await objectBytes(origin);
      const c0 = cpuSecondsOf(origin.pid);
      const p0 = side();
      const p = await timed(process.execPath, [VMDN, 'pull', origin.url, o.image, out, '--cache', cache, '--json', '--no-progress'], { tmpDir: tmp, timeoutMs: 20 * 60_000 });
      const p1 = side();
      const j = p.exitCode === 0 ? (JSON.parse(p.stdout) as { bytesDownloaded: number; objects: { downloaded: number } }) : undefined;
      run.pulls.push({
        seconds: p.seconds, cpuSeconds: p.cpuSeconds, serverCpuSeconds: cpuSecondsOf(origin.pid) - c0, storeCpuSeconds: p1.cpu - p0.cpu,
        bytes: j?.bytesDownloaded ?? NaN, objects: j?.objects.downloaded ?? NaN, originObjectBytes: await objectBytes(origin) - b0,
        ...(p0.c && p1.c ? { rgw: diff(p0.c, p1.c) } : {}), ...(p.exitCode !== 0 ? { error: errOf(p.exitCode, p.stderrTail) } : {}),
      });
      fs.rmSync(cache, { recursive: true, force: true });
      fs.rmSync(out, { force: true });
    }
  } finally {
    await origin.stop();
  }
  return run;
}
