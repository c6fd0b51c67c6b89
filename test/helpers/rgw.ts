/**
 * A real S3 server (Ceph RGW, scripts/ceph-rgw.sh) for the S3 tests: one per
 * test file that asks, on free ports, stopped by the returned `stop` (and by
 * a process exit hook, so a crashed test leaves no daemons). With
 * $VMDN_TEST_S3="endpoint=URL access=KEY secret=SECRET" an already running
 * server is used instead (quicker when iterating).
 */
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { REPO } from './cli.js';

export interface Rgw {
  endpoint: string;
  /** A fresh bucket's store URL: s3://BUCKET?endpoint=... */
  storeUrl(prefix?: string): string;
  /** Stop and start the daemons (fault tests); the data is lost with memstore, so only radosgw restarts. */
  restartGateway(downMs: number): Promise<void>;
  stop(): Promise<void>;
}

const SCRIPT = path.join(REPO, 'scripts', 'ceph-rgw.sh');

/**
 * Ports for the daemons, free now and outside Linux's ephemeral range
 * (32768-60999 by default): a port from bind(0) goes back to that pool when
 * the check closes it, so while radosgw restarts (seconds with the port
 * closed) any outgoing connection or `listen(0)` of a test running beside
 * this one could take it. Held together while chosen, so the two differ.
 */
async function freePorts(n: number): Promise<number[]> {
  const held: net.Server[] = [];
  try {
    while (held.length < n) {
      const port = 20_000 + Math.floor(Math.random() * 12_000);
      const s = net.createServer();
      const ok = await new Promise<boolean>((resolve) => s.once('error', () => resolve(false)).listen(port, '127.0.0.1', () => resolve(true)));
      if (ok) held.push(s);
    }
    return held.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
  }
}

function parse(line: string): { endpoint: string; access: string; secret: string } {
  const kv = Object.fromEntries(line.trim().split(/\s+/).map((w) => w.split('=', 2) as [string, string]));
  if (!kv.endpoint || !kv.access || !kv.secret) throw new Error(`ceph-rgw.sh said: ${line}`);
  return { endpoint: kv.endpoint, access: kv.access, secret: kv.secret };
}

export async function startRgw(): Promise<Rgw> {
  let dir: string | undefined;
  let info;
  if (process.env.VMDN_TEST_S3) info = parse(process.env.VMDN_TEST_S3);
  else {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmdn-rgw-'));
    const [rgwPort, monPort] = await freePorts(2);
    const env = { ...process.env, RGW_PORT: String(rgwPort), MON_PORT: String(monPort) };
    const stopNow = () => { try { execFileSync(SCRIPT, ['stop', dir!], { stdio: 'ignore' }); } catch { /* best effort */ } };
    process.once('exit', stopNow);
    try {
      info = parse(execFileSync(SCRIPT, ['start', dir], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 180_000 }).trim().split('\n').pop()!);
    } catch (e) {
      stopNow();
      throw e;
    }
  }
  process.env.AWS_ACCESS_KEY_ID = info.access;
  process.env.AWS_SECRET_ACCESS_KEY = info.secret;
  process.env.AWS_REGION = 'us-east-1';
  const endpoint = info.endpoint;
  return {
    endpoint,
    storeUrl: (prefix = '') => `s3://vmdn-${randomBytes(6).toString('hex')}${prefix ? `/${prefix}` : ''}?endpoint=${encodeURIComponent(endpoint)}`,
    async restartGateway(downMs) {
      if (!dir) throw new Error('restartGateway needs a server this helper started');
      const pid = Number(fs.readFileSync(path.join(dir, 'rgw.pid'), 'utf8'));
      process.kill(pid, 'SIGTERM');
      while (alive(pid)) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, downMs));
      execFileSync('radosgw', ['--conf', path.join(dir, 'ceph.conf'), '-n', 'client.rgw.a', '--pid-file', path.join(dir, 'rgw.pid')]);
      // radosgw forks and returns before it listens; on a busy machine that took long enough for a
      // test's retry to find the port closed (CI: ECONNREFUSED on the re-push), so wait until it answers
      const until = Date.now() + 120_000;
      for (;;) {
        try {
          await (await fetch(info.endpoint, { signal: AbortSignal.timeout(2000) })).arrayBuffer();
          return;
        } catch (err) {
          if (Date.now() > until) throw new Error(`radosgw did not answer at ${info.endpoint} within 120 s after its restart`, { cause: err });
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    },
    async stop() {
      if (dir) execFileSync(SCRIPT, ['stop', dir], { stdio: 'ignore' });
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
