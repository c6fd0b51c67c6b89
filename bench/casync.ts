/**
 * casync's blob index (.caibx) and chunk store, read directly so the benchmark
 * can count what a casync client would fetch.
 *
 * Layout (casync src/caformat.h, src/caindex.c; all integers u64 little-endian):
 *   CaFormatIndex   size=48, type=CA_FORMAT_INDEX, feature_flags, chunk_size_min, _avg, _max
 *   CaFormatTable   size=UINT64_MAX, type=CA_FORMAT_TABLE
 *   items           40 bytes each: end offset of the chunk in the blob, 32-byte chunk id
 *   tail            40 bytes: 0, 0, index offset (48), table size (16 + 40 n + 40), CA_FORMAT_TABLE_TAIL_MARKER
 * Chunk files: STORE/<first 4 hex digits of the id>/<id hex>.cacnk (compressed).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';

const CA_FORMAT_INDEX = 0x96824d9c7b129ff9n;
const CA_FORMAT_TABLE = 0xe75b9e112f17417dn;
const CA_FORMAT_TABLE_TAIL_MARKER = 0x4b4f050e5549ecd1n;
const UINT64_MAX = 0xffffffffffffffffn;
const INDEX_SIZE = 48;
const TABLE_HEADER = 16;
const ITEM = 40;
const TAIL = 40;

export interface CaIndexChunk {
  offset: number;
  size: number;
  id: string;
}

export interface CaIndex {
  featureFlags: bigint;
  chunkSizeMin: number;
  chunkSizeAvg: number;
  chunkSizeMax: number;
  chunks: CaIndexChunk[];
  /** end offset of the last chunk: the blob's size */
  blobSize: number;
  fileBytes: number;
}

export function parseCaibx(buf: Buffer, what = 'caibx'): CaIndex {
  const fail = (msg: string): never => {
    throw new Error(`${what}: ${msg}`);
  };
  if (buf.length < INDEX_SIZE + TABLE_HEADER + TAIL) fail(`too short (${buf.length} bytes)`);
  const u64 = (off: number) => buf.readBigUInt64LE(off);
  const num = (off: number) => {
    const v = u64(off);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`value at ${off} too large`);
    return Number(v);
  };
  if (u64(0) !== BigInt(INDEX_SIZE) || u64(8) !== CA_FORMAT_INDEX) fail('not a casync index (bad CaFormatIndex header)');
  const featureFlags = u64(16);
  const [chunkSizeMin, chunkSizeAvg, chunkSizeMax] = [num(24), num(32), num(40)];
  if (u64(48) !== UINT64_MAX || u64(56) !== CA_FORMAT_TABLE) fail('bad CaFormatTable header');
  const itemsBytes = buf.length - INDEX_SIZE - TABLE_HEADER - TAIL;
  if (itemsBytes % ITEM !== 0) fail(`table of ${itemsBytes} bytes is not a whole number of items`);
  const t = buf.length - TAIL;
  if (u64(t) !== 0n || u64(t + 8) !== 0n || u64(t + 16) !== BigInt(INDEX_SIZE) || u64(t + 32) !== CA_FORMAT_TABLE_TAIL_MARKER) fail('bad table tail');
  if (num(t + 24) !== TABLE_HEADER + itemsBytes + TAIL) fail(`table tail declares ${num(t + 24)} bytes, file has ${TABLE_HEADER + itemsBytes + TAIL}`);
  const chunks: CaIndexChunk[] = [];
  let prev = 0;
  for (let off = INDEX_SIZE + TABLE_HEADER; off < t; off += ITEM) {
    const end = num(off);
    const size = end - prev;
    if (size <= 0 || size > chunkSizeMax) fail(`item ${chunks.length}: chunk size ${size} outside 1..${chunkSizeMax}`);
    chunks.push({ offset: prev, size, id: buf.toString('hex', off + 8, off + ITEM) });
    prev = end;
  }
  return { featureFlags, chunkSizeMin, chunkSizeAvg, chunkSizeMax, chunks, blobSize: prev, fileBytes: buf.length };
}

export async function readCaibx(file: string): Promise<CaIndex> {
  return parseCaibx(await fsp.readFile(file), path.basename(file));
}

export const chunkPath = (store: string, id: string) => path.join(store, id.slice(0, 4), `${id}.cacnk`);

/** Every chunk file in a casync store: id -> compressed size. */
export async function scanCasyncStore(store: string): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for (const d of await fsp.readdir(store, { withFileTypes: true })) {
    if (!d.isDirectory() || !/^[0-9a-f]{4}$/.test(d.name)) continue;
    const dir = path.join(store, d.name);
    const names = (await fsp.readdir(dir)).filter((n) => /^[0-9a-f]{64}\.cacnk$/.test(n));
    const sizes = await Promise.all(names.map((n) => fsp.stat(path.join(dir, n)).then((s) => s.size)));
    names.forEach((n, i) => m.set(n.slice(0, 64), sizes[i]!));
  }
  return m;
}

/** The compression of a stored chunk, from its magic bytes. */
export async function chunkCompression(store: string, id: string): Promise<string> {
  const fh = await fsp.open(chunkPath(store, id), 'r');
  try {
    const b = Buffer.alloc(6);
    await fh.read(b, 0, 6, 0);
    if (b.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    if (b.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
    if (b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    return `unknown (${b.toString('hex')})`;
  } finally {
    await fh.close();
  }
}

export interface CaIndexCheck {
  chunks: number;
  distinctChunks: number;
  blobSize: number;
  expectedSize: number;
  sizeMatches: boolean;
  missingChunks: number;
}

/** Checks the parse: the last end offset is the image size and every chunk is in the store. */
export function checkIndex(idx: CaIndex, expectedSize: number, store: Map<string, number>): CaIndexCheck {
  const distinct = new Set(idx.chunks.map((c) => c.id));
  let missing = 0;
  for (const id of distinct) if (!store.has(id)) missing++;
  return { chunks: idx.chunks.length, distinctChunks: distinct.size, blobSize: idx.blobSize, expectedSize, sizeMatches: idx.blobSize === expectedSize, missingChunks: missing };
}

export interface CaDelivery {
  /** compressed bytes of the chunks the target needs and the held images lack */
  chunkBytes: number;
  chunks: number;
  /** the target's index file, which a client fetches too */
  indexBytes: number;
  total: number;
  /** everything the target references (a client holding nothing) */
  fullChunkBytes: number;
}

export function casyncDelivery(target: CaIndex, held: CaIndex[], store: Map<string, number>): CaDelivery {
  const have = new Set<string>();
  for (const h of held) for (const c of h.chunks) have.add(c.id);
  const want = new Set(target.chunks.map((c) => c.id));
  let chunkBytes = 0;
  let chunks = 0;
  let fullChunkBytes = 0;
  for (const id of want) {
    const size = store.get(id);
    if (size === undefined) throw new Error(`casync chunk ${id} missing from the store`);
    fullChunkBytes += size;
    if (have.has(id)) continue;
    chunkBytes += size;
    chunks++;
  }
  return { chunkBytes, chunks, indexBytes: target.fileBytes, total: chunkBytes + target.fileBytes, fullChunkBytes };
}
