/**
 * Raw and qcow2 writers checked against real qemu-img: the output must pass
 * `qemu-img check` and compare identical to the source raw image that was fed
 * in, in irregular ascending chunks.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createRawWriter } from '../../src/container/raw-writer.js';
import { createQcow2Writer, type Qcow2WriterOptions } from '../../src/container/qcow2/writer.js';
import type { DiskWriter } from '../../src/container/disk.js';
import { VmdnError } from '../../src/errors.js';

const MiB = 1 << 20;

/** xorshift32: deterministic data and chunk sizes, so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

function randomData(seed: number, n: number): Uint8Array {
  const r = rng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = r() & 0xff;
  return out;
}

interface Piece {
  offset: number;
  data: Uint8Array;
}

let dir = '';
before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmdn-writers-'));
});
after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function makeSource(name: string, size: number, pieces: Piece[]): Promise<string> {
  const file = path.join(dir, name);
  const fh = await fs.open(file, 'w');
  try {
    for (const p of pieces) await fh.write(p.data, 0, p.data.length, p.offset);
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
  return file;
}

/** The main source: random and compressible data, unaligned edges, zero runs inside data, a partial last cluster. */
const SIZE = 64 * MiB + 4608;
function mainPieces(): Piece[] {
  const withZeros = randomData(2, 2 * MiB + 17);
  withZeros.fill(0, 300_000, 500_000); // unaligned zero run
  withZeros.fill(0, 1 * MiB - 333, 1 * MiB - 333 + 3 * 65536); // whole zero clusters (source offset 1 MiB+333 + that)
  const text = new TextEncoder().encode('vmdn compressible line 0123456789 abcdefghij\n');
  const compressible = new Uint8Array(3 * MiB);
  for (let i = 0; i < compressible.length; i++) compressible[i] = text[i % text.length];
  return [
    { offset: 0, data: randomData(1, 100_000) },
    { offset: MiB + 333, data: withZeros },
    { offset: 10 * MiB, data: compressible },
    { offset: 14 * MiB + 4096, data: new Uint8Array(2 * MiB).fill(0xaa) },
    { offset: 20 * MiB + 1, data: Uint8Array.of(0x5a) },
    { offset: 40 * MiB + 65535, data: randomData(3, 9000) },
    { offset: SIZE - 4000, data: randomData(4, 4000) },
  ];
}

/** Chunk lengths from 1 byte to 4 MiB, mixed so both tiny and large writes occur often. */
function chunkLen(r: () => number): number {
  switch (r() % 4) {
    case 0: return 1 + (r() % 15);
    case 1: return 1 + (r() % 8191);
    case 2: return 1 + (r() % (300 * 1024));
    default: return MiB + (r() % (3 * MiB));
  }
}

/** Read `src` in irregular ascending chunks and write them; all-zero chunks are sometimes skipped (left as gaps). */
async function feedFile(w: DiskWriter, src: string, seed: number): Promise<void> {
  const r = rng(seed);
  const fh = await fs.open(src, 'r');
  try {
    const size = (await fh.stat()).size;
    for (let off = 0; off < size; ) {
      const n = Math.min(chunkLen(r), size - off);
      const buf = new Uint8Array(n);
      const { bytesRead } = await fh.read(buf, 0, n, off);
      assert.equal(bytesRead, n);
      const zero = Buffer.from(buf.buffer).equals(Buffer.alloc(n));
      if (!zero || r() % 2 === 0) await w.write(off, buf);
      off += n;
    }
  } finally {
    await fh.close();
  }
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}
function run(cmd: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 * MiB }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function assertQcow2Clean(file: string): Promise<Record<string, number>> {
  const r = await run('qemu-img', ['check', '--output=json', '-f', 'qcow2', file]);
  assert.equal(r.code, 0, `qemu-img check failed: ${r.stdout}${r.stderr}`);
  const j = JSON.parse(r.stdout) as Record<string, number>;
  assert.equal(j['check-errors'], 0);
  assert.equal(j['leaks'] ?? 0, 0, 'leaks');
  assert.equal(j['corruptions'] ?? 0, 0, 'corruptions');
  return j;
}

async function assertIdentical(src: string, out: string, fmt: 'raw' | 'qcow2'): Promise<void> {
  const r = await run('qemu-img', ['compare', '-f', 'raw', '-F', fmt, src, out]);
  assert.equal(r.code, 0, `qemu-img compare: ${r.stdout}${r.stderr}`);
}

async function info(file: string): Promise<Record<string, any>> {
  const r = await run('qemu-img', ['info', '--output=json', file]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, any>;
}

async function checkQcow2(src: string, out: string, size: number, opts: Qcow2WriterOptions): Promise<void> {
  const c = await assertQcow2Clean(out);
  await assertIdentical(src, out, 'qcow2');
  // zero clusters stay unallocated; compression is used when asked for
  const cs = 2 ** (opts.clusterBits ?? 16);
  assert.ok((c['allocated-clusters'] ?? 0) * cs <= size / 2 + cs, `too many allocated clusters: ${c['allocated-clusters']}`);
  if (size > 0) assert.equal((c['compressed-clusters'] ?? 0) > 0, Boolean(opts.compress) && (c['allocated-clusters'] ?? 0) > 0);
  const i = await info(out);
  assert.equal(i.format, 'qcow2');
  assert.equal(i['virtual-size'], Math.ceil(size / 512) * 512, 'qcow2 size is rounded up to whole sectors');
  assert.equal(i['cluster-size'], 2 ** (opts.clusterBits ?? 16));
  assert.equal(i['format-specific'].data.compat, '1.1');
  assert.equal(i['format-specific'].data['compression-type'], opts.compress === 'zstd' ? 'zstd' : 'zlib');
}

let mainSrc = '';
async function mainSource(): Promise<string> {
  mainSrc ||= await makeSource('main.raw', SIZE, mainPieces());
  return mainSrc;
}

test('raw writer: identical, sparse, atomic', async () => {
  const src = await mainSource();
  const out = path.join(dir, 'out.raw');
  const w = await createRawWriter(out, SIZE);
  await feedFile(w, src, 11);
  await assert.rejects(fs.stat(out), 'nothing under the final name before finish()');
  await w.finish();
  await assertIdentical(src, out, 'raw');
  const st = await fs.stat(out);
  assert.equal(st.size, SIZE);
  assert.ok(st.blocks * 512 < 12 * MiB, `raw output not sparse: ${st.blocks * 512} bytes allocated`);
  const i = await info(out);
  assert.equal(i.format, 'raw');
  assert.equal(i['virtual-size'], SIZE);
  assert.deepEqual((await fs.readdir(dir)).filter((f) => f.includes('.tmp-')), []);
});

const qcow2Cases: [string, Qcow2WriterOptions][] = [
  ['uncompressed', {}],
  ['zstd', { compress: 'zstd' }],
  ['deflate', { compress: 'deflate' }],
  ['clusterBits 12', { clusterBits: 12 }],
  ['clusterBits 12 zstd', { clusterBits: 12, compress: 'zstd' }],
  ['clusterBits 21', { clusterBits: 21 }],
  ['clusterBits 21 zstd', { clusterBits: 21, compress: 'zstd' }],
  ['clusterBits 9 deflate', { clusterBits: 9, compress: 'deflate' }],
];
qcow2Cases.forEach(([name, opts], k) => {
  test(`qcow2 writer: ${name}`, async () => {
    const src = await mainSource();
    const out = path.join(dir, `out-${k}.qcow2`);
    const w = await createQcow2Writer(out, SIZE, opts);
    await feedFile(w, src, 100 + k);
    await w.finish();
    await checkQcow2(src, out, SIZE, opts);
    await fs.rm(out);
  });
});

test('empty disks (no writes), including virtual size 0', async () => {
  for (const size of [10 * MiB + 512, 0]) {
    const src = await makeSource(`empty-${size}.raw`, size, []);
    const q = path.join(dir, `empty-${size}.qcow2`);
    const w = await createQcow2Writer(q, size, {});
    await w.finish();
    await checkQcow2(src, q, size, {});
    const r = path.join(dir, `empty-${size}.out.raw`);
    const rw = await createRawWriter(r, size);
    await rw.finish();
    assert.equal((await fs.stat(r)).size, size);
    assert.equal((await fs.stat(r)).blocks, 0);
  }
});

test('qcow2 spanning several L2 tables (1 GiB+ virtual, data near the end)', async () => {
  const size = 1024 * MiB + 3 * 65536 + 100;
  const pieces: Piece[] = [
    { offset: 5, data: randomData(7, 70_000) },
    { offset: 511 * MiB + 65536 * 8 - 1000, data: randomData(8, 5000) }, // straddles the first L2 table's range
    { offset: 700 * MiB, data: randomData(9, 200_000) },
    { offset: size - 70_000, data: randomData(10, 70_000) },
  ];
  const src = await makeSource('big.raw', size, pieces);
  for (const opts of [{}, { compress: 'zstd' }] as Qcow2WriterOptions[]) {
    const out = path.join(dir, 'big.qcow2');
    const w = await createQcow2Writer(out, size, opts);
    for (const p of pieces) {
      // split each piece in two unaligned writes
      const cut = Math.floor(p.data.length / 3);
      await w.write(p.offset, p.data.subarray(0, cut));
      await w.write(p.offset + cut, p.data.subarray(cut));
    }
    await w.finish();
    await checkQcow2(src, out, size, opts);
    await fs.rm(out);
  }
});

test('qcow2 with a 64 TiB virtual size allocates only what is written', async () => {
  const size = 64 * 2 ** 40;
  const out = path.join(dir, 'huge.qcow2');
  const w = await createQcow2Writer(out, size, { compress: 'zstd' });
  await w.write(0, new Uint8Array(4096).fill(0x11));
  await w.write(size - 8192, new Uint8Array(4096).fill(0x5a));
  await w.finish();
  await assertQcow2Clean(out);
  assert.ok((await fs.stat(out)).size < 4 * MiB);
  // Too big for a sparse raw source on common filesystems: verify with qemu-io patterns instead.
  const cmds = ['read -P 0x11 0 4096', 'read -P 0 4096 61440', `read -P 0x5a ${size - 8192} 4096`, `read -P 0 ${size - 4096} 4096`];
  const r = await run('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), out]);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout + r.stderr, /fail|error|mismatch/i);
  assert.equal((r.stdout.match(/^read /gm) ?? []).length, cmds.length, r.stdout);
});

const isUsage = (e: unknown): boolean => e instanceof VmdnError && e.code === 'E_USAGE';

test('abort() leaves no files', async () => {
  const sub = await fs.mkdtemp(path.join(dir, 'abort-'));
  const makers: ((p: string) => Promise<DiskWriter>)[] = [
    (p) => createRawWriter(p, 20 * MiB),
    (p) => createQcow2Writer(p, 20 * MiB, {}),
    (p) => createQcow2Writer(p, 20 * MiB, { compress: 'zstd' }),
  ];
  for (const make of makers) {
    const w = await make(path.join(sub, 'x.img'));
    await w.write(1000, randomData(5, 12 * MiB)); // enough to push batches to disk
    await w.abort();
    await w.abort(); // idempotent
    assert.deepEqual(await fs.readdir(sub), []);
    const idle = await make(path.join(sub, 'y.img'));
    await idle.abort();
    assert.deepEqual(await fs.readdir(sub), []);
  }
});

test('out-of-order, overlapping and past-the-end writes throw E_USAGE', async () => {
  const makers: ((p: string) => Promise<DiskWriter>)[] = [
    (p) => createRawWriter(p, MiB),
    (p) => createQcow2Writer(p, MiB, { clusterBits: 12 }),
  ];
  for (const make of makers) {
    const w = await make(path.join(dir, 'usage.img'));
    await w.write(1000, new Uint8Array(100).fill(1));
    await assert.rejects(w.write(500, new Uint8Array(10)), isUsage);
    await assert.rejects(w.write(1050, new Uint8Array(10)), isUsage); // overlaps the previous write
    await assert.rejects(w.write(MiB - 10, new Uint8Array(11)), isUsage);
    await assert.rejects(w.write(MiB + 1, new Uint8Array(0)), isUsage);
    await assert.rejects(w.write(-1, new Uint8Array(1)), isUsage);
    const inFlight = w.write(2000, new Uint8Array(70_000));
    await assert.rejects(w.write(80_000, new Uint8Array(10)), isUsage, 'concurrent write');
    await inFlight;
    await w.write(MiB - 10, new Uint8Array(10).fill(2)); // still usable after rejected writes
    await w.abort();
    await assert.rejects(w.write(MiB, new Uint8Array(0)), isUsage);
  }
  await assert.rejects(createQcow2Writer(path.join(dir, 'bad.qcow2'), MiB, { clusterBits: 22 }), isUsage);
  await assert.rejects(createQcow2Writer(path.join(dir, 'bad.qcow2'), -1, {}), isUsage);
  await assert.rejects(createRawWriter(path.join(dir, 'bad.raw'), 1.5), isUsage);
  // 64 TiB with 512-byte clusters would need a 16 GiB L1 table; qemu caps L1 at 32 MiB
  await assert.rejects(createQcow2Writer(path.join(dir, 'bad.qcow2'), 64 * 2 ** 40, { clusterBits: 9 }), isUsage);
  assert.deepEqual((await fs.readdir(dir)).filter((f) => f.startsWith('usage') || f.startsWith('bad')), []);
});
