/**
 * Files export, direct content: big files are staged as sparse stand-ins
 * (size only), so `mke2fs -d` makes their inodes without copying a byte;
 * ext4-alloc then gives them blocks in the image and the store's codec
 * workers decode each chunk straight into those blocks of the image file.
 * Only for filesystems with extents (no bigalloc) and stores that can copy
 * into a descriptor; everything else keeps the staged path.
 */
import fs from 'node:fs';
import type { Ext4Params } from '../../fs/ext4/params.js';
import { canCopyToFile, type CopyToFile, type ReadableStore } from '../../store/types.js';
import { allocateFiles, type AllocRequest, type FileMap } from '../../fs/ext4/alloc.js';
import { openFsImage, type FsImage } from '../../fs/ext4/image.js';
import { pathKey, type TreeRecord } from '../../model/files-tree.js';
import { VmdnError } from '../../errors.js';
import type { ChunkEntry, FsRebuild } from '../../model/manifest.js';
import type { Digest } from '../../store/digest.js';
import { packageObjects } from '../../model/package-ref.js';
import type { PhysRun } from '../../fs/ext4/alloc.js';

/** Smaller files could become inline data or fit a block: not worth it, and mke2fs may not leave them blockless. */
const MIN_DIRECT = 8 * 1024;
const IN_FLIGHT = 16;
const WALK_LANES = 8;

interface Dir {
  ino: number;
  prefix: string;
  /** Under scaffolding: entries need not be records. */
  extra: boolean;
}

/**
 * Record indices of the files whose content goes straight into the image (empty when the path does not apply).
 * Decided by the tree and the parameters alone, never by the store: the rebuilt bytes (which blocks a file
 * gets) must not depend on where the objects come from, and `vmdn nbd` serves exactly what export writes.
 */
export function directFiles(records: TreeRecord[], p: Ext4Params): Set<number> {
  const out = new Set<number>();
  if (process.env.VMDN_NO_DIRECT === '1' || !p.features.includes('extent') || p.features.includes('bigalloc')) return out;
  records.forEach((r, i) => {
    if (r.type === 'file' && r.chunks && r.link === undefined && r.pkg === undefined && r.streamOffset === undefined && r.size! >= MIN_DIRECT) out.add(i);
  });
  return out;
}

/**
 * The objects a metadata-only build (buildFsMetadata) reads: the small-file
 * stream, the packages, and the content of every file that is not direct.
 * Lets a lazy reader fetch them in batches before the build asks one by one.
 */
export function metadataInputs(f: FsRebuild, records: TreeRecord[]): Digest[] {
  const direct = directFiles(records, f.params);
  const out = new Set<Digest>(f.stream.map((c) => c[2]));
  for (const p of f.packages ?? []) for (const d of packageObjects(p)) out.add(d);
  records.forEach((r, i) => {
    if (r.link === undefined && !direct.has(i)) for (const c of r.chunks ?? []) out.add(c[2]);
  });
  return [...out];
}

/** Logical block ranges a file's chunks touch, merged. */
export function coveredBlocks(r: TreeRecord, bs: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [off, len] of r.chunks ?? []) {
    const s = Math.floor(off / bs);
    const e = Math.ceil((off + len) / bs);
    const last = out[out.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

/**
 * The inode of every record in the fresh filesystem, found at its staged path
 * (`where`) by one walk of the directories; an entry that is no record's must
 * lie under a scaffolding name at the root (`scaffold`: big directories'
 * holding places, lost+found), which debugfs removes later. Inode numbers
 * stay put through those fixups.
 */
export async function stagedInodes(img: FsImage, where: Buffer[], scaffold: Set<string>): Promise<number[]> {
  const want = new Map<string, number>();
  where.forEach((w, i) => want.set(pathKey(w), i));
  const inos = new Array<number>(where.length).fill(0);
  const root = want.get('');
  if (root === undefined) throw new VmdnError('E_INTERNAL', 'tree has no root');
  inos[root] = 2;
  let found = 1;
  const entered = new Set<number>([2]);
  const opened = await openFsImage(img);
  try {
    const f = opened.fs;
    const visit = async ({ ino, prefix, extra }: Dir): Promise<Dir[]> => {
      const subdirs: Dir[] = [];
      for (const e of await f.readdir(await f.stat(ino))) {
        const name = pathKey(e.nameBytes);
        if (name === '.' || name === '..') continue;
        const key = prefix + name;
        const i = want.get(key);
        const isExtra = i === undefined && (extra || (prefix === '' && scaffold.has(name)));
        if (i !== undefined) {
          if (!inos[i]) found++;
          inos[i] = e.ino;
        } else if (!isExtra) throw new VmdnError('E_INTERNAL', `rebuilt filesystem has ${Buffer.from(key, 'latin1').toString()} that the tree does not`);
        if (e.type !== 'dir') continue;
        if (entered.has(e.ino)) throw new VmdnError('E_INTERNAL', `rebuilt filesystem: directory inode ${e.ino} entered twice`);
        entered.add(e.ino);
        subdirs.push({ ino: e.ino, prefix: key + '/', extra: isExtra });
      }
      return subdirs;
    };
    // a few directories at a time: their blocks are read while others are parsed
    const pending: Dir[] = [{ ino: 2, prefix: '', extra: false }];
    let active = 0;
    await new Promise<void>((resolve, reject) => {
      let error: unknown;
      const pump = () => {
        while (error === undefined && active < WALK_LANES && pending.length) {
          active++;
          visit(pending.pop()!).then(
            (subdirs) => {
              active--;
              pending.push(...subdirs);
              pump();
            },
            (err) => {
              active--;
              error ??= err;
              pump();
            },
          );
        }
        // settle only when no read is in flight: the image closes right after
        if (!active && (error !== undefined || !pending.length)) {
          if (error !== undefined) reject(error);
          else resolve();
        }
      };
      pump();
    });
  } finally {
    await opened.close();
  }
  if (found !== where.length) throw new VmdnError('E_INTERNAL', `rebuilt filesystem lacks ${where.length - found} of the tree's entries`);
  return inos;
}

export interface DirectPlan {
  records: TreeRecord[];
  indices: number[];
  maps: FileMap[];
  blockSize: number;
}

/** Give the direct files their blocks (call right after mke2fs, before anything frees blocks). */
export async function allocateDirect(img: FsImage, records: TreeRecord[], inos: number[], direct: Set<number>, p: Ext4Params): Promise<DirectPlan> {
  const indices = [...direct];
  const reqs: AllocRequest[] = indices.map((i) => ({ ino: inos[i]!, size: records[i]!.size!, ranges: coveredBlocks(records[i]!, p.blockSize) }));
  return { records, indices, maps: await allocateFiles(img, reqs), blockSize: p.blockSize };
}

/**
 * Write every direct file's chunks at their blocks' offsets: by the store's
 * workers when a chunk lies in one physical run (and the store copies into
 * files), else fetched and written here piece by piece.
 */
export async function writeDirect(img: FsImage, plan: DirectPlan, store: ReadableStore, signal: AbortSignal | undefined, onBytes: (n: number) => void): Promise<void> {
  const copier: CopyToFile | undefined = canCopyToFile(store) ? store : undefined;
  const bs = plan.blockSize;
  const jobs: Array<{ chunk: ChunkEntry; map: FileMap }> = [];
  plan.indices.forEach((i, k) => {
    for (const c of plan.records[i]!.chunks!) jobs.push({ chunk: c, map: plan.maps[k]! });
  });
  const fd = fs.openSync(img.file, 'r+');
  const fsEnd = img.offset + img.length;
  const at = (phys: number, delta: number, len: number): number => {
    const o = img.offset + phys * bs + delta;
    if (o < img.offset || o + len > fsEnd) throw new VmdnError('E_INTERNAL', `direct write ${o}+${len} outside the filesystem`);
    return o;
  };
  try {
    let n = 0;
    let failed = false;
    const one = async (chunk: ChunkEntry, map: FileMap) => {
      const [off, len, digest] = chunk;
      const first = Math.floor(off / bs);
      const run = runAt(map.runs, first);
      if (!run) throw new VmdnError('E_INTERNAL', `inode ${map.ino}: no block for offset ${off}`);
      if (copier && off + len <= (run.logical + run.length) * bs) {
        // `len` bounds the write: an object of another size (a lying tree) is refused before it lands
        const got = await copier.copyToFd(digest, fd, at(run.physical, off - run.logical * bs, len), len);
        if (got !== len) throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${got} bytes, the tree says ${len}`, { digest });
        return;
      }
      // straddles runs (or a store without workers): split it here
      const data = await store.get(digest, { signal });
      if (data.length !== len) throw new VmdnError('E_CORRUPT_OBJECT', `object ${digest.slice(0, 12)} has ${data.length} bytes, the tree says ${len}`, { digest });
      for (let pos = off; pos < off + len; ) {
        const b = Math.floor(pos / bs);
        const r = runAt(map.runs, b);
        if (!r) throw new VmdnError('E_INTERNAL', `inode ${map.ino}: no block for offset ${pos}`);
        const end = Math.min(off + len, (r.logical + r.length) * bs);
        writeAll(fd, data, pos - off, end - pos, at(r.physical, pos - r.logical * bs, end - pos));
        pos = end;
      }
    };
    const lane = async () => {
      while (n < jobs.length && !failed && !signal?.aborted) {
        const { chunk, map } = jobs[n++]!;
        try {
          await one(chunk, map);
        } catch (err) {
          failed = true;
          throw err;
        }
        onBytes(chunk[1]);
      }
    };
    // every lane settles before the descriptor closes: a worker must never write into a reused number
    const settled = await Promise.allSettled(Array.from({ length: Math.min(IN_FLIGHT, jobs.length) }, lane));
    for (const x of settled) if (x.status === 'rejected') throw x.reason;
    signal?.throwIfAborted();
  } finally {
    fs.closeSync(fd);
  }
}

/** The run holding logical block `b` (runs ascend). */
export function runAt(runs: PhysRun[], b: number): PhysRun | undefined {
  let lo = 0;
  for (let hi = runs.length; lo < hi; ) {
    const mid = (lo + hi) >>> 1;
    if (runs[mid]!.logical + runs[mid]!.length <= b) lo = mid + 1;
    else hi = mid;
  }
  const r = runs[lo];
  return r && r.logical <= b ? r : undefined;
}

function writeAll(fd: number, b: Uint8Array, off: number, len: number, pos: number): void {
  while (len > 0) {
    const n = fs.writeSync(fd, b, off, len, pos);
    if (n <= 0) throw new VmdnError('E_IO', 'short write');
    off += n;
    len -= n;
    pos += n;
  }
}
