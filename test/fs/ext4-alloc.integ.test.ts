/**
 * The block allocator (ext4-alloc) against real e2fsprogs: mke2fs makes a
 * filesystem with sparse stand-ins in fragmented free space (every other
 * small file deleted), the allocator gives them blocks, files-direct writes
 * their chunks through a real store, and then e2fsck -fn must be clean and
 * our reader must read back exactly what was written (zeros in holes, also
 * where the free blocks held garbage before). Corrupt descriptors, bitmaps
 * and counts must be refused before anything is written.
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { allocateFiles, type AllocRequest } from '../../src/fs/ext4/alloc.js';
import { descChecksum } from '../../src/fs/ext4/groups.js';
import { parseSuperblock } from '../../src/fs/ext4/superblock.js';
import { crc32cRaw } from '../../src/fs/ext4/crc32c.js';
import { openFsImage, type FsImage } from '../../src/fs/ext4/image.js';
import { coveredBlocks, writeDirect } from '../../src/strategy/files/direct.js';
import type { TreeRecord } from '../../src/model/files-tree.js';
import type { ChunkEntry } from '../../src/model/manifest.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { VmdnError } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';

const t = tmpDir('vmdn-ext4-alloc-');
let store: LocalStore;
before(async () => {
  store = await LocalStore.open(path.join(t.dir, 'store'));
});
after(async () => {
  await store.close();
  t.cleanup();
});

function sh(cmd: string, args: string[], input?: string): { status: number; out: string } {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

interface Made {
  img: FsImage;
  names: string[];
  sizes: number[];
}

/**
 * A filesystem with `fill` small files of two blocks, every other one then
 * deleted (free space in two-block holes), and the sparse stand-ins `sizes`.
 */
function makeFs(name: string, bs: number, fill: number, sizes: number[], offset = 0): Made {
  const dir = path.join(t.dir, name);
  const stage = path.join(dir, 'stage');
  fs.mkdirSync(path.join(stage, 'fill'), { recursive: true });
  for (let i = 0; i < fill; i++) fs.writeFileSync(path.join(stage, 'fill', String(i)), Buffer.alloc(2 * bs, 1 + (i % 250)));
  const names = sizes.map((_, i) => `sparse${i}`);
  names.forEach((n, i) => fs.truncateSync((fs.writeFileSync(path.join(stage, n), ''), path.join(stage, n)), sizes[i]!));
  // too big for the inode: mke2fs gives the stand-in an xattr block, which i_blocks counts
  const x = sh('setfattr', ['-n', 'user.big', '-v', `0x${'ab'.repeat(600)}`, path.join(stage, names[0]!)]);
  assert.equal(x.status, 0, x.out);
  const file = path.join(dir, 'img');
  const blocks = Math.ceil(((fill * 2 * bs + sizes.filter((x) => x < FILLER_SIZE).reduce((a, b) => a + b, 0)) * 1.4) / bs) + 2048;
  if (offset) fs.writeFileSync(file, Buffer.alloc(offset, 0x5a));
  const mk = sh('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', String(bs), '-O', 'metadata_csum,64bit,extent,flex_bg,^resize_inode,^has_journal', '-E', `nodiscard,lazy_itable_init=0${offset ? `,offset=${offset}` : ''}`, '-d', stage, file, String(blocks)]);
  assert.equal(mk.status, 0, mk.out);
  const img: FsImage = { file, offset, length: blocks * bs };
  const rm = Array.from({ length: Math.floor(fill / 2) }, (_, k) => `rm /fill/${2 * k}`).join('\n');
  const dbg = sh('debugfs', ['-w', '-f', '-', offset ? `${file}?offset=${offset}` : file], rm + '\n');
  assert.equal(dbg.status, 0, dbg.out);
  return { img, names, sizes };
}

async function inodesOf(made: Made): Promise<number[]> {
  const o = await openFsImage(made.img);
  try {
    return await Promise.all(made.names.map(async (n) => (await o.fs.lookup(n)).ino));
  } finally {
    await o.close();
  }
}

/** Chunks of random lengths tiling [from, to) (not block-aligned). */
function tile(rng: () => number, from: number, to: number, max: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let o = from; o < to; ) {
    const l = Math.min(to - o, 1 + Math.floor(rng() * max));
    out.push([o, l]);
    o += l;
  }
  return out;
}

function e2fsck(img: FsImage): void {
  let dev = img.file;
  if (img.offset) {
    dev = `${img.file}.fs`;
    const all = fs.readFileSync(img.file);
    fs.writeFileSync(dev, all.subarray(img.offset, img.offset + img.length));
  }
  const r = sh('e2fsck', ['-fn', dev]);
  assert.equal(r.status, 0, r.out);
}

/** Fill every free block of the image with garbage: allocated blocks must still read as zero where nothing was written. */
async function dirtyFreeBlocks(img: FsImage): Promise<void> {
  const o = await openFsImage(img);
  let used: Array<[number, number]>;
  try {
    used = await o.fs.usedRanges();
  } finally {
    await o.close();
  }
  const fd = fs.openSync(img.file, 'r+');
  let pos = 0;
  for (const [s, e] of [...used, [img.length, img.length] as [number, number]]) {
    if (s > pos) fs.writeSync(fd, Buffer.alloc(s - pos, 0xa5), 0, s - pos, img.offset + pos);
    pos = Math.max(pos, e);
  }
  fs.closeSync(fd);
}

const FILLERS = 8;
const FILLER_SIZE = 64 << 20;

/** Free runs of the image (blocks), from our reader's used ranges. */
async function freeRuns(img: FsImage, bs: number): Promise<Array<[number, number]>> {
  const o = await openFsImage(img);
  try {
    const out: Array<[number, number]> = [];
    let pos = 0;
    for (const [s, e] of [...(await o.fs.usedRanges()), [img.length, img.length] as [number, number]]) {
      if (s > pos) out.push([pos / bs, (s - pos) / bs]);
      pos = Math.max(pos, e);
    }
    return out;
  } finally {
    await o.close();
  }
}

async function roundTrip(name: string, bs: number, fill: number, minDepth: number, offset = 0): Promise<void> {
  const rng = mulberry32(bs + fill);
  const hole = 3 * bs + 5;
  // 0: plain; 1: chunks, a hole, chunks again, a zero chunk, an uncovered tail;
  // 2: as large as most of the two-block holes together (a deep extent tree); then the fillers
  const sizes = [40 * bs + 123, 64 * bs, fill * bs * 0.8, ...Array.from({ length: FILLERS }, () => FILLER_SIZE)];
  const made = makeFs(name, bs, fill, sizes, offset);
  await dirtyFreeBlocks(made.img);
  const inos = await inodesOf(made);
  // the fillers take every larger free run, leaving the two-block holes
  let used = 0;
  for (;;) {
    const big = (await freeRuns(made.img, bs)).sort((a, b) => b[1] - a[1])[0]!;
    if (big[1] <= 4) break;
    assert.ok(used < FILLERS, 'free space too coarse for the fillers');
    await allocateFiles(made.img, [{ ino: inos[3 + used]!, size: FILLER_SIZE, ranges: [[0, Math.min(big[1], FILLER_SIZE / bs)]] }]);
    used++;
  }
  const layout = [tile(rng, 0, sizes[0]!, 3 * bs), [...tile(rng, 0, hole, bs), ...tile(rng, hole + 7 * bs, 40 * bs, 2 * bs)], tile(rng, 0, sizes[2]!, 5 * bs)];
  const zeroChunk = layout[1]!.length - 1; // all zeros: the workers skip writing it
  const expect = sizes.slice(0, 3).map((s) => Buffer.alloc(s));
  const records: TreeRecord[] = [];
  for (const [i, chunks] of layout.entries()) {
    const entries: ChunkEntry[] = [];
    for (const [k, [o, l]] of chunks.entries()) {
      const data = i === 1 && k === zeroChunk ? Buffer.alloc(l) : Buffer.from(Array.from({ length: l }, () => Math.floor(rng() * 256)));
      data.copy(expect[i]!, o);
      entries.push([o, l, (await store.put(data)).digest]);
    }
    records.push({ path: Buffer.from(made.names[i]!), type: 'file', perm: 0o644, uid: 0, gid: 0, size: sizes[i], chunks: entries, times: { mtime: { sec: 0, nsec: 0 }, atime: { sec: 0, nsec: 0 }, ctime: { sec: 0, nsec: 0 } } });
  }
  const reqs: AllocRequest[] = records.map((r, i) => ({ ino: inos[i]!, size: r.size!, ranges: coveredBlocks(r, bs) }));
  const maps = await allocateFiles(made.img, reqs);
  assert.ok(maps[2]!.runs.length > 100, `fragmented free space: ${maps[2]!.runs.length} runs`);
  await writeDirect(made.img, { records, indices: [0, 1, 2], maps, blockSize: bs }, store, undefined, () => {});
  e2fsck(made.img);
  const o = await openFsImage(made.img);
  try {
    for (const [i, ino] of inos.entries()) {
      if (i >= 3 + used) break;
      const parts: Uint8Array[] = [];
      for await (const p of o.fs.readFile(await o.fs.stat(ino))) parts.push(p);
      const got = Buffer.concat(parts);
      assert.ok(got.equals(expect[i] ?? Buffer.alloc(FILLER_SIZE)), `file ${i} content`);
      if (i === 0) assert.equal((await o.fs.xattrs(await o.fs.stat(ino))).get('user.big')?.length, 600, 'xattr block kept');
    }
    const depth = Buffer.from((await o.fs.inode(inos[2]!)).block).readUInt16LE(6);
    assert.ok(depth >= minDepth, `extent tree depth ${depth} >= ${minDepth}`);
    // only the chunks' blocks are mapped: the hole and the uncovered tail stay sparse
    const mapped = (await o.fs.fileExtents(await o.fs.stat(inos[1]!))).map((e) => [e.fileOffset / bs, (e.fileOffset + e.length) / bs]);
    const merged: number[][] = [];
    for (const [s0, e0] of mapped) {
      const last = merged[merged.length - 1];
      if (last && last[1] === s0) last[1] = e0!;
      else merged.push([s0!, e0!]);
    }
    assert.deepEqual(merged, coveredBlocks(records[1]!, bs));
  } finally {
    await o.close();
  }
}

it('allocates, writes and passes e2fsck: 4 KiB blocks, depth-1 extent tree', async () => {
  await roundTrip('b4k', 4096, 800, 1);
});

it('1 KiB blocks, depth-2 extent tree, filesystem at an offset in its file', async () => {
  await roundTrip('b1k', 1024, 1200, 2, 1 << 20);
});

function sha(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

it('refuses corrupt descriptors, bitmaps and counts without writing (seeded)', async () => {
  const seed = seedFrom('VMDN_ALLOC_SEED');
  const rng = mulberry32(seed);
  const made = makeFs('bad', 4096, 40, [200 * 4096]);
  const [ino] = await inodesOf(made);
  const pristine = fs.readFileSync(made.img.file);
  const sb = parseSuperblock(pristine.subarray(1024, 2048), pristine.length, []);
  const gdt = sb.blockSize * (sb.firstDataBlock + 1);
  const desc = (g: number) => gdt + g * sb.descSize;
  const resum = (b: Buffer, g: number) => b.writeUInt16LE(descChecksum(sb, g, b.subarray(desc(g), desc(g) + sb.descSize))!, desc(g) + 0x1e);
  const bitmapOf = (b: Buffer, g: number) => b.readUInt32LE(desc(g)) * sb.blockSize;
  const mutations: Array<[string, (b: Buffer) => void, RegExp]> = [
    ['descriptor bytes', (b) => (b[desc(0) + Math.floor(rng() * 0x1e)]! ^= 1 << Math.floor(rng() * 8)), /descriptor checksum/],
    ['block bitmap pointer past the end', (b) => (b.writeUInt32LE(sb.blocksCount + Math.floor(rng() * 1000), desc(0)), resum(b, 0)), /block bitmap at block .* outside/],
    ['inode table pointer past the end', (b) => (b.writeUInt32LE(sb.blocksCount - 1, desc(0) + 8), resum(b, 0)), /inode table at block .* outside/],
    ['free count', (b) => (b.writeUInt16LE(b.readUInt16LE(desc(0) + 0xc) + 1 + Math.floor(rng() * 50), desc(0) + 0xc), resum(b, 0)), /free blocks/],
    ['bitmap bit', (b) => (b[bitmapOf(b, 0) + 1 + Math.floor(rng() * 100)]! ^= 1 << Math.floor(rng() * 8)), /bitmap checksum/],
    [
      'bitmap marks the inode table free',
      (b) => {
        const it = b.readUInt32LE(desc(0) + 8);
        const bm = bitmapOf(b, 0);
        b[bm + (it >>> 3)]! &= ~(1 << (it & 7));
        const c = crc32cRaw(sb.csumSeed!, b, bm, bm + sb.blocksPerGroup / 8);
        b.writeUInt16LE(c & 0xffff, desc(0) + 0x18);
        b.writeUInt16LE(c >>> 16, desc(0) + 0x38);
        resum(b, 0);
      },
      /marks metadata block/,
    ],
    [
      'superblock free count',
      (b) => {
        b.writeUInt32LE(b.readUInt32LE(1024 + 0xc) - 1 - Math.floor(rng() * 9), 1024 + 0xc);
        b.writeUInt32LE(crc32cRaw(0xffffffff, b, 1024, 1024 + 0x3fc), 1024 + 0x3fc);
      },
      /superblock says/,
    ],
    ['inode not a stand-in', () => undefined, /not a regular file/],
  ];
  for (const [what, mutate, re] of mutations) {
    const b = Buffer.from(pristine);
    mutate(b);
    fs.writeFileSync(made.img.file, b);
    const before = sha(made.img.file);
    const req: AllocRequest = { ino: what.startsWith('inode not') ? 2 : ino!, size: what.startsWith('inode not') ? 4096 : 200 * 4096, ranges: [[0, 200]] };
    await assert.rejects(allocateFiles(made.img, [req]), (e: unknown) => {
      assert.ok(e instanceof VmdnError, `${what} (seed ${seed}): not a VmdnError: ${String(e)}`);
      assert.match(e.message, re, `${what} (seed ${seed})`);
      return true;
    });
    assert.equal(sha(made.img.file), before, `${what} (seed ${seed}): nothing written`);
  }
  // and the pristine image still works
  fs.writeFileSync(made.img.file, pristine);
  await allocateFiles(made.img, [{ ino: ino!, size: 200 * 4096, ranges: [[0, 200]] }]);
  e2fsck(made.img);
});
