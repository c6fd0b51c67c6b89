/**
 * The manifest, format "vmdn.manifest" version 1 (docs/format.md): how to
 * rebuild a virtual disk bit for bit from content-addressed chunks. It is
 * itself stored as an object, so an image's identity is its manifest digest.
 * Manifests carry no names or timestamps: identical disks share one manifest.
 */
import { VmdnError } from '../errors.js';
import { isDigest, type Digest } from '../store/digest.js';
import { validateExt4Params, type Ext4Params } from '../fs/ext4/params.js';
import { validatePackageRef, type PackageRef } from './package-ref.js';
import { MAX_CHUNK, type ChunkEntry } from './chunk.js';

export const MANIFEST_KIND = 'vmdn.manifest';
export const MANIFEST_VERSION = 1;
export { MAX_CHUNK, type ChunkEntry };
/** Bound on entries so a hostile manifest cannot make us loop for hours. */
export const MAX_ENTRIES = 64 * 1024 * 1024;


export interface Manifest {
  kind: typeof MANIFEST_KIND;
  version: typeof MANIFEST_VERSION;
  virtualSize: number;
  /** The container the image was imported from, so export can default to it. */
  source: { format: string; clusterSize: number };
  /** Chunker spec, e.g. "cdc:16k:64k:256k" or "fixed:64k" (see strategy/chunker.ts). */
  chunker: string;
  /** Bytes the source had allocated (data extents), before zero detection. */
  allocated: number;
  /** Ascending, non-overlapping; every byte not covered reads as zero. */
  chunks: ChunkEntry[];
  /** Absent: chunks were cut over the disk alone. Present: also along file data (strategy/chunks/file-layout.ts). */
  cuts?: CutsBy;
  /**
   * Files strategy: filesystems rebuilt from their parameters and file tree
   * (strategy/files-*.ts). No chunk overlaps their byte ranges.
   */
  filesystems?: FsRebuild[];
  /**
   * Imported from an OVA: the archive's OVF descriptor, stored as one object
   * (shared by the images of its disks), written back on export to OVA.
   */
  ovf?: Digest;
}

export interface FsRebuild {
  /** Partition number (0: whole disk). */
  index: number;
  offset: number;
  length: number;
  type: 'ext4';
  params: Ext4Params;
  entries: number;
  /** The tree and times texts (model/files-tree.ts), each cut into chunks, in order. */
  tree: Digest[];
  times: Digest[];
  /**
   * Small files' contents one after another (tree order), cut into chunks: [offset, length,
   * digest] in stream coordinates, uncovered bytes zero. Compresses and dedups like an archive.
   */
  streamBytes: number;
  stream: ChunkEntry[];
  /**
   * Packages strategy: the packages tree entries point into (`k`): each .deb as objects plus
   * an index of its files. Their files are unpacked from the .deb on export.
   */
  packages?: PackageRef[];
}

/** File-aware cuts: files of at least `minFile` bytes start and end chunks; `sparsify` dropped unused blocks. */
export interface CutsBy {
  by: 'files';
  minFile: number;
  sparsify: boolean;
}

export function encodeManifest(m: Manifest): Uint8Array {
  validateManifest(m);
  // chunk entries one per line: readable, diffable, and still compact
  const head = JSON.stringify({ ...m, chunks: undefined });
  const body = m.chunks.map((c) => JSON.stringify(c)).join(',\n');
  return new TextEncoder().encode(`${head.slice(0, -1)},"chunks":[\n${body}\n]}\n`);
}

export function decodeManifest(bytes: Uint8Array, source = 'store'): Manifest {
  let m: unknown;
  try {
    m = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new VmdnError('E_MANIFEST', `manifest from ${source} is not valid JSON`, { source }, { cause: err });
  }
  validateManifest(m as Manifest, source);
  return m as Manifest;
}

function bad(msg: string, source: string): never {
  throw new VmdnError('E_MANIFEST', `manifest from ${source}: ${msg}`, { source });
}

const isSize = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

export function validateManifest(m: Manifest, source = 'caller'): void {
  if (!m || typeof m !== 'object') bad('not an object', source);
  if (m.kind !== MANIFEST_KIND) bad(`kind is ${JSON.stringify(m.kind)}, expected ${MANIFEST_KIND}`, source);
  if (m.version !== MANIFEST_VERSION) bad(`version ${m.version} not supported (this vmdn reads ${MANIFEST_VERSION})`, source);
  if (!isSize(m.virtualSize) || m.virtualSize > 2 ** 50) bad('virtualSize out of range', source);
  if (!isSize(m.allocated) || m.allocated > m.virtualSize) bad('allocated out of range', source);
  if (!m.source || typeof m.source.format !== 'string' || !isSize(m.source.clusterSize)) bad('bad source', source);
  if (typeof m.chunker !== 'string') bad('bad chunker', source);
  if (m.cuts !== undefined) {
    const c = m.cuts;
    if (!c || c.by !== 'files' || !isSize(c.minFile) || c.minFile > MAX_CHUNK || typeof c.sparsify !== 'boolean') bad('bad cuts', source);
  }
  if (!Array.isArray(m.chunks) || m.chunks.length > MAX_ENTRIES) bad('bad chunk list', source);
  if (m.filesystems !== undefined) validateFilesystems(m, source);
  if (m.ovf !== undefined && !isDigest(m.ovf)) bad('bad ovf digest', source);
  let end = 0;
  // indexed, no destructuring: this loop runs once per export over ~15k chunks, before the copy
  // starts, in code not yet optimized, where an iterator per entry made it 3x slower (~24 ms)
  const chunks = m.chunks;
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i];
    if (!Array.isArray(c) || c.length !== 3) bad('chunk entry is not [offset, length, digest]', source);
    const o = c[0];
    const l = c[1];
    const d = c[2];
    if (!isSize(o) || !isSize(l) || l === 0 || l > MAX_CHUNK) bad(`chunk at ${o}: bad offset/length`, source);
    if (o < end) bad(`chunk at ${o} overlaps or is out of order`, source);
    if (o + l > m.virtualSize) bad(`chunk at ${o} extends past virtualSize`, source);
    if (!isDigest(d)) bad(`chunk at ${o}: bad digest`, source);
    end = o + l;
  }
}

function validateFilesystems(m: Manifest, source: string): void {
  const fss = m.filesystems!;
  if (!Array.isArray(fss) || fss.length > 128) bad('bad filesystems list', source);
  const ranges: Array<[number, number]> = [];
  for (const f of fss) {
    if (!f || typeof f !== 'object' || f.type !== 'ext4') bad('bad filesystem record', source);
    if (!isSize(f.index) || !isSize(f.offset) || !isSize(f.length) || f.length === 0 || f.offset + f.length > m.virtualSize) bad(`filesystem ${f.index}: bad range`, source);
    if (!isSize(f.entries) || f.entries === 0) bad(`filesystem ${f.index}: bad entry count`, source);
    for (const list of [f.tree, f.times]) {
      if (!Array.isArray(list) || list.length === 0 || list.length > MAX_ENTRIES || !list.every(isDigest)) bad(`filesystem ${f.index}: bad tree objects`, source);
    }
    if (!isSize(f.streamBytes) || f.streamBytes > 2 ** 50 || !Array.isArray(f.stream) || f.stream.length > MAX_ENTRIES) bad(`filesystem ${f.index}: bad stream`, source);
    let end = 0;
    for (const c of f.stream) {
      if (!Array.isArray(c) || c.length !== 3 || !isSize(c[0]) || !isSize(c[1]) || c[1] === 0 || c[1] > MAX_CHUNK || c[0] < end || c[0] + c[1] > f.streamBytes || !isDigest(c[2])) bad(`filesystem ${f.index}: bad stream chunk`, source);
      end = c[0] + c[1];
    }
    if (f.packages !== undefined) {
      if (!Array.isArray(f.packages) || f.packages.length > 100_000) bad(`filesystem ${f.index}: bad packages list`, source);
      for (const p of f.packages) {
        const why = validatePackageRef(p);
        if (why) bad(`filesystem ${f.index}: package ${JSON.stringify((p as { name?: unknown })?.name)}: ${why}`, source);
      }
    }
    try {
      validateExt4Params(f.params, f.length);
    } catch (err) {
      bad(`filesystem ${f.index}: ${(err as Error).message}`, source);
    }
    ranges.push([f.offset, f.offset + f.length]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) if (ranges[i]![0] < ranges[i - 1]![1]) bad('filesystems overlap', source);
  // chunks are ascending: one merge pass finds any chunk inside a rebuilt range
  let r = 0;
  for (const [o, l] of m.chunks) {
    while (r < ranges.length && ranges[r]![1] <= o) r++;
    if (r < ranges.length && ranges[r]![0] < o + l) bad(`chunk at ${o} overlaps a rebuilt filesystem`, source);
  }
}

/** Distinct chunk digests with their lengths. */
export function uniqueChunks(m: Manifest): Map<Digest, number> {
  const out = new Map<Digest, number>();
  for (const [, l, d] of m.chunks) out.set(d, l);
  return out;
}

export function dataBytes(m: Manifest): number {
  let n = 0;
  for (const c of m.chunks) n += c[1];
  return n;
}
