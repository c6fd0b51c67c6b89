/**
 * The slab read path under pressure: a local store's chunks image served by
 * an in-process NbdServer over a SlabDisk with a TINY slab (2 MiB: ~16
 * slots of its chunks), a tiny cache and read-ahead (512 KiB each), so slots
 * are reused all the time.
 * Many raw connections read at random with many requests in flight
 * (structured and simple replies, DF, big and small reads, sequential runs
 * that trigger read-ahead); some stop reading for a while so their replies
 * wait in the socket while other reads reuse the slab; some are destroyed
 * mid-reply. Every byte of every reply is compared to the image: a slot
 * reused while a reply still references it sends wrong bytes, which nothing
 * else would catch (the hash was checked before). One object of the image
 * is damaged: reads over it must fail alone. Then qemu-img compare of the
 * export, and the slab's accounting: idle, every hold is the cache's or the
 * read-ahead's; closed, nothing is held.
 *   VMDN_SLAB_STRESS_SEED=<n>  replay a run (the seed is printed)
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { LocalStore } from '../../src/store/local/local-store.js';
import { Slab } from '../../src/store/local/slab.js';
import { SlabReads } from '../../src/store/local/slab-reads.js';
import { SlabDisk } from '../../src/nbd/slab-disk.js';
import { BlockDevice } from '../../src/nbd/device.js';
import { AllocationMap } from '../../src/nbd/allocation.js';
import { NbdServer } from '../../src/nbd/server.js';
import { importImageFile } from '../../src/images/import.js';
import { resolveImage } from '../../src/images/names.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import type { Manifest } from '../../src/model/manifest.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng, writeRaw } from '../helpers/images.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { CMD, hasQemuTools, request } from './raw-client.js';
import { Client, type Tally } from './checked-client.js';

const SEED = seedFrom('VMDN_SLAB_STRESS_SEED');
const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 12 * MiB + 4096;
/** ~16 slots of the image's chunks (~130 KiB on average here): every read reuses slots others just let go. */
const SLAB_BYTES = 2 * MiB;

let t: ReturnType<typeof tmpDir>;
let rawFile: string;
let image: Buffer;
let manifest: Manifest;
let store: LocalStore;
let disk: SlabDisk;
let server: NbdServer;
let sock: string;
/** [start, end) of every chunk whose object is damaged: reads over them must fail. */
let bad: Array<[number, number]> = [];
let repair: () => void;

/** Pieces with 4 KiB and 16 KiB sparse gaps, a zero run, a repeated MiB (same objects at two places), a 1 MiB hole. */
function buildImage(file: string): void {
  const rep = prng(SEED ^ 4, MiB);
  writeRaw(file, SIZE, [
    { offset: 0, data: prng(SEED ^ 1, MiB) },
    { offset: MiB + 4096, data: prng(SEED ^ 2, 700 * KiB) },
    { offset: MiB + 4096 + 700 * KiB + 16 * KiB, data: prng(SEED ^ 3, 300 * KiB) },
    { offset: 2.5 * MiB, data: Buffer.concat([prng(SEED ^ 5, 256 * KiB), Buffer.alloc(200 * KiB), prng(SEED ^ 6, 256 * KiB)]) },
    { offset: 4 * MiB, data: rep },
    { offset: 6 * MiB, data: rep },
    { offset: 7.5 * MiB, data: prng(SEED ^ 7, 10 * KiB) },
    { offset: 9 * MiB, data: prng(SEED ^ 8, 2 * MiB + 3 * KiB) },
    { offset: SIZE - 1000, data: prng(SEED ^ 9, 1000) },
  ]);
}

/** Damage one object (a chunk that is not the first nor repeated) in its pack; returns its ranges and how to undo it. */
function damageOne(s: LocalStore, m: Manifest): { ranges: Array<[number, number]>; repair: () => void } {
  const count = new Map<string, number>();
  for (const c of m.chunks) count.set(c[2], (count.get(c[2]) ?? 0) + 1);
  const victim = m.chunks.filter((c) => count.get(c[2]) === 1)[Math.floor(m.chunks.length / 3)]!;
  const row = s.index.getObject(victim[2])!;
  const file = s.place(victim[2]).objPath;
  const at = row.offset! + row.storedSize! - 5;
  const flip = () => {
    const fd = fs.openSync(file, 'r+');
    try {
      const b = Buffer.alloc(1);
      fs.readSync(fd, b, 0, 1, at);
      b[0]! ^= 0xff;
      fs.writeSync(fd, b, 0, 1, at);
    } finally {
      fs.closeSync(fd);
    }
  };
  flip();
  return { ranges: m.chunks.filter((c) => c[2] === victim[2]).map((c) => [c[0], c[0] + c[1]]), repair: flip };
}

function newDisk(): SlabDisk {
  return new SlabDisk(manifest, new SlabReads(store, new Slab(SLAB_BYTES), 2), { cacheBytes: 512 * KiB, aheadBytes: 512 * KiB });
}

async function startServer(d: SlabDisk): Promise<NbdServer> {
  const s = new NbdServer(new BlockDevice(d, null, AllocationMap.ofManifest(manifest, 64 * KiB)), { name: 'img:1', matches: () => true, maxInFlight: 8 });
  await s.listen({ socket: sock });
  return s;
}

before(async () => {
  console.log(`slab stress seed ${SEED} (VMDN_SLAB_STRESS_SEED to replay)`);
  t = tmpDir('vmdn-slab-stress-');
  rawFile = path.join(t.dir, 'img.raw');
  buildImage(rawFile);
  image = fs.readFileSync(rawFile);
  const dir = path.join(t.dir, 'store');
  const first = await LocalStore.open(dir);
  await importImageFile(first, rawFile, parseImageRef('img:1'), { chunker: DEFAULT_CDC });
  await first.close(); // rows committed, packs synced
  store = await LocalStore.open(dir);
  manifest = (await resolveImage(store, parseImageRef('img:1'))).manifest;
  ({ ranges: bad, repair } = damageOne(store, manifest));
  sock = path.join(t.dir, 'nbd.sock');
  disk = newDisk();
  server = await startServer(disk);
});

after(async () => {
  await server?.close();
  await disk?.close();
  await store?.close();
  t?.cleanup();
});

const overlapsBad = (o: number, l: number) => bad.some(([s, e]) => o < e && o + l > s);
const open = (structured: boolean) => Client.open(sock, structured, { image, isBad: overlapsBad });


function randomReads(rnd: () => number, n: number): Array<{ offset: number; length: number; df?: boolean }> {
  const out = [];
  let cursor = Math.floor(rnd() * SIZE);
  for (let i = 0; i < n; i++) {
    const k = rnd();
    const length = k < 0.5 ? 1 + Math.floor(rnd() * 64 * KiB) : k < 0.85 ? 64 * KiB + Math.floor(rnd() * 960 * KiB) : MiB + Math.floor(rnd() * 3 * MiB);
    let offset: number;
    if (rnd() < 0.3) {
      // in order, as a guest or qemu-img streams: the read-ahead kicks in
      offset = cursor;
      cursor += length;
      if (cursor >= SIZE) cursor = 0;
    } else offset = Math.floor(rnd() * SIZE);
    offset = Math.min(offset, SIZE - 1);
    out.push({ offset, length: Math.min(length, SIZE - offset), df: rnd() < 0.2 });
  }
  return out;
}

/** Wait until nothing but the cache and the read-ahead holds a slot (decodes in flight finish). */
async function idle(d: SlabDisk): Promise<ReturnType<SlabDisk['slabStats']>> {
  let s = d.slabStats();
  for (let i = 0; i < 200 && s.holds !== s.cacheSlots + s.aheadSlots; i++) {
    await new Promise((r) => setTimeout(r, 25));
    s = d.slabStats();
  }
  return s;
}

it('many clients reading at random through a tiny slab get the image\'s bytes, every reply', { timeout: 120_000 }, async () => {
  const rnd = mulberry32(SEED);
  const tally: Tally = { replies: 0, bytes: 0, failed: 0, wrong: [] };
  const readers = Array.from({ length: 8 }, async (_, i) => {
    const c = await open(i < 6);
    // two of them stop reading now and then, big replies queued on their sockets
    await c.run(randomReads(rnd, 60), 12, tally, i === 4 || i === 7 ? 7 : 0);
    c.close();
  });
  // clients that go away mid-reply: big reads in flight, a little read, then the socket destroyed
  const quitters = Array.from({ length: 3 }, async (_, i) => {
    for (let round = 0; round < 6; round++) {
      const c = await open(i !== 1);
      for (const q of randomReads(rnd, 10)) c.sock.write(request(CMD.READ, q.offset, Math.max(q.length, Math.min(2 * MiB, SIZE - q.offset)), { handle: 1 }));
      await new Promise((r) => setTimeout(r, Math.floor(rnd() * 30)));
      c.sock.destroy();
    }
  });
  await Promise.all([...readers, ...quitters]);
  assert.deepEqual(tally.wrong.slice(0, 10), [], `${tally.wrong.length} wrong replies (seed ${SEED})`);
  assert.ok(tally.replies >= 8 * 60, `${tally.replies} replies`);
  assert.ok(tally.failed > 0, 'some reads crossed the damaged object');
  assert.ok(tally.bytes > 20 * SLAB_BYTES, `slots reused: ${tally.bytes} bytes through a ${SLAB_BYTES}-byte slab`);
  const s = await idle(disk);
  console.log(`${tally.replies} replies, ${tally.bytes} bytes checked, ${tally.failed} failed over the damaged object; ${manifest.chunks.length} chunks; slab ${JSON.stringify(s)}`);
  assert.equal(s.holds, s.cacheSlots + s.aheadSlots, `idle: every hold the cache's or the read-ahead's (${JSON.stringify(s)})`);
});

it('qemu-img compare of the export through the tiny slab', { timeout: 120_000, skip: !hasQemuTools() && 'qemu-img not installed' }, async () => {
  // the damaged object repaired: a failed read was not cached, so the next one decodes it afresh
  repair();
  bad = [];
  const run = promisify(execFile);
  const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', rawFile, `nbd+unix:///img:1?socket=${sock}`]).then(() => null, (e: Error & { stdout?: string; stderr?: string }) => `${e.message} ${e.stdout} ${e.stderr}`);
  assert.equal(cmp, null);
  const s = await idle(disk);
  assert.equal(s.holds, s.cacheSlots + s.aheadSlots, `idle after qemu-img: ${JSON.stringify(s)}`);
});

it('closing the server and the disk with reads in flight leaves no slot held', { timeout: 60_000 }, async () => {
  const rnd = mulberry32(SEED + 1);
  const clients = await Promise.all(Array.from({ length: 4 }, (_, i) => open(i % 2 === 0)));
  for (const c of clients) for (const q of randomReads(rnd, 12)) c.sock.write(request(CMD.READ, q.offset, Math.max(q.length, Math.min(2 * MiB, SIZE - q.offset))));
  // closed while workers decode for them: holds beyond the cache's and read-ahead's
  for (let i = 0; i < 2000; i++) {
    const s = disk.slabStats();
    if (s.holds > s.cacheSlots + s.aheadSlots + 4) break;
    await new Promise((r) => setImmediate(r));
  }
  await server.close();
  await disk.close();
  const slab = disk.slabStats();
  for (let i = 0; i < 200 && (slab.holds !== 0 || slab.used !== 0); i++) {
    await new Promise((r) => setTimeout(r, 25));
    Object.assign(slab, disk.slabStats());
  }
  assert.deepEqual({ holds: slab.holds, used: slab.used, slots: slab.slots }, { holds: 0, used: 0, slots: 0 });
  for (const c of clients) c.sock.destroy();
});
