/**
 * What signed image records cost (docs/http-api.md, Signed image records):
 * the origin's added work per name request (a reused signature; a new one
 * every half validity) against serving a 32 KiB object, and a pull with and
 * without --trust. CPU time (process.cpuUsage) rather than wall time: the
 * machine may be shared. In process: origin and client share the cores.
 *
 *   npm run build && node dist/bench/signed-records.js [--json]
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { LocalStore } from '../src/store/local/local-store.js';
import { Origin } from '../src/net/server/origin.js';
import { RecordSigner } from '../src/net/server/record-signer.js';
import { RecordTrust } from '../src/net/client/trust.js';
import { pullImage } from '../src/net/client/pull.js';
import { importImageFile } from '../src/images/import.js';
import { parseImageRef } from '../src/store/image-name.js';
import { DEFAULT_CDC } from '../src/strategy/chunker.js';
import { encodePublicKey, generateKey, sign } from '../src/net/wire/minisign.js';
import { objectUrlPath } from '../src/net/wire/http-api.js';

const cpuUs = () => {
  const c = process.cpuUsage();
  return c.user + c.system;
};

/** CPU µs per call of `fn`, run `n` times after a warm-up. */
async function perCall(n: number, fn: () => unknown): Promise<number> {
  for (let i = 0; i < Math.min(200, n); i++) await fn();
  const t = cpuUs();
  for (let i = 0; i < n; i++) await fn();
  return (cpuUs() - t) / n;
}

/** CPU µs per HTTP GET of `url`s, 8 in flight over keep-alive (client and server in this process). */
async function perGet(base: string, paths: string[], n: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const get = (p: string) => new Promise<void>((resolve, reject) => {
    http.get(base + p, { agent }, (res) => {
      res.on('data', () => {});
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${p}: HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
  let next = 0;
  const run = async (count: number) => {
    next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < count) await get(paths[next++ % paths.length]!);
    }));
  };
  await run(300);
  const t = cpuUs();
  await run(n);
  const us = (cpuUs() - t) / n;
  agent.destroy();
  return us;
}

export interface SignedRecordsResult {
  signerReusedUs: number; newSignatureUs: number; objectGet32KiBUs: number; refGetUnsignedUs: number; refGetSignedUs: number;
  reusedVsObjectPercent: number; clientCheckUs: number;
  pull8MiB: { plainWallMs: number; trustWallMs: number; plainCpuMs: number; trustCpuMs: number };
}

/** The measurements; `requests` GETs per round (default 2000), `pulls` pulls per mode (default 5). */
export async function benchSignedRecords(o: { requests?: number; rounds?: number; pulls?: number } = {}): Promise<SignedRecordsResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmdn-bench-signed-'));
  const key = generateKey();
  const store = await LocalStore.open(path.join(dir, 'origin'));
  try {
    // a 32 KiB object that does not compress, and an 8 MiB image to pull
    const obj = (await store.put(Buffer.from(Array.from({ length: 32 << 10 }, () => Math.floor(Math.random() * 256))))).digest;
    const raw = path.join(dir, 'img.raw');
    fs.writeFileSync(raw, Buffer.from(Array.from({ length: 8 << 20 }, () => Math.floor(Math.random() * 256))));
    await importImageFile(store, raw, parseImageRef('bench:1'), { chunker: DEFAULT_CDC });
    const row = (await store.names.get('bench', '1'))!;

    // the signer alone: a reused signature (every request but one per half validity), and a new one
    const signer = new RecordSigner(key, store);
    const reusedUs = await perCall(100_000, () => signer.sign(row));
    const msg = Buffer.from(JSON.stringify(row));
    const signUs = await perCall(2000, () => sign(msg, key, 'trusted comment of a typical length: vmdn image record bench:1 seq 1'));

    // over HTTP: a 32 KiB object, the name unsigned and signed (the object path is unchanged by signing)
    const plain = new Origin(store);
    const signed = new Origin(store, { signer });
    const plainUrl = await plain.listen();
    const signedUrl = await signed.listen();
    // interleaved rounds, the least of each: what runs first pays for warm-up, and the machine may be busy
    const N = o.requests ?? 2000;
    const least = { object: Infinity, refPlain: Infinity, refSigned: Infinity };
    for (let round = 0; round < (o.rounds ?? 3); round++) {
      least.object = Math.min(least.object, await perGet(plainUrl, [objectUrlPath(obj)], N));
      least.refSigned = Math.min(least.refSigned, await perGet(signedUrl, ['/v1/images/bench/1'], N));
      least.refPlain = Math.min(least.refPlain, await perGet(plainUrl, ['/v1/images/bench/1'], N));
    }
    const { object: objectUs, refPlain: refPlainUs, refSigned: refSignedUs } = least;

    // the client: one check (two Ed25519 verifications, seen.json read), and whole pulls with and without --trust
    const pubFile = path.join(dir, 'origin.pub');
    fs.writeFileSync(pubFile, encodePublicKey(key));
    const trust = RecordTrust.open({ files: [pubFile], dir: path.join(dir, 'trust') })!;
    const answer = { manifest: row.manifest, ...(await signer.sign(row)) };
    const checkUs = await perCall(2000, () => trust.check({ name: 'bench', tag: '1' }, answer, signedUrl));
    const pulls: Record<'plain' | 'trust', { wallMs: number[]; cpuMs: number[] }> = { plain: { wallMs: [], cpuMs: [] }, trust: { wallMs: [], cpuMs: [] } };
    for (let rep = 0; rep < (o.pulls ?? 5); rep++) {
      for (const mode of ['plain', 'trust'] as const) {
        const cacheDir = path.join(dir, `cache-${mode}-${rep}`);
        const cache = await LocalStore.open(cacheDir);
        const t0 = performance.now();
        const c0 = cpuUs();
        await pullImage({ url: signedUrl, ref: parseImageRef('bench:1'), cache, out: path.join(dir, 'out.raw'), http: { trust: mode === 'trust' ? trust : undefined } });
        pulls[mode].cpuMs.push((cpuUs() - c0) / 1000);
        pulls[mode].wallMs.push(performance.now() - t0);
        await cache.close();
        fs.rmSync(cacheDir, { recursive: true, force: true });
      }
    }
    await plain.close();
    await signed.close();
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const r = {
      signerReusedUs: reusedUs, newSignatureUs: signUs, objectGet32KiBUs: objectUs, refGetUnsignedUs: refPlainUs, refGetSignedUs: refSignedUs,
      reusedVsObjectPercent: (100 * reusedUs) / objectUs, clientCheckUs: checkUs,
      pull8MiB: { plainWallMs: median(pulls.plain.wallMs), trustWallMs: median(pulls.trust.wallMs), plainCpuMs: median(pulls.plain.cpuMs), trustCpuMs: median(pulls.trust.cpuMs) },
    };
    return r;
  } finally {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const r = await benchSignedRecords();
  const { objectGet32KiBUs: objectUs, refGetUnsignedUs: refPlainUs, refGetSignedUs: refSignedUs, signerReusedUs: reusedUs, newSignatureUs: signUs, clientCheckUs: checkUs } = r;
  if (process.argv.includes('--json')) return void console.log(JSON.stringify(r, null, 2));
  const f = (n: number) => n.toFixed(1);
  console.log(`origin, CPU per request (client and server in one process):
  GET 32 KiB object           ${f(objectUs)} µs (unchanged by signing: objects are not signed)
  GET name, unsigned          ${f(refPlainUs)} µs
  GET name, signed            ${f(refSignedUs)} µs
  signer, reused signature    ${f(reusedUs)} µs per name request = ${(100 * reusedUs / objectUs).toFixed(3)} % of a 32 KiB object GET
  signer, new signature       ${f(signUs)} µs (once per name per half validity, 12 h by default)
client:
  record check (--trust)      ${f(checkUs)} µs per name resolved
  pull 8 MiB, median of 5     without --trust ${f(r.pull8MiB.plainWallMs)} ms wall / ${f(r.pull8MiB.plainCpuMs)} ms CPU; with --trust ${f(r.pull8MiB.trustWallMs)} ms / ${f(r.pull8MiB.trustCpuMs)} ms`);
}

// run as a script (node dist/bench/signed-records.js), not when bench/trust.ts imports it
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
