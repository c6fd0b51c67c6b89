/**
 * Files strategy, import side. Every ext2/3/4 filesystem on the disk is
 * recorded as its creation parameters plus its file tree, each file's
 * content as chunk objects (the same objects file-aware chunking makes, so
 * both strategies share them). Everything else -- partition table, boot
 * regions, gaps, filesystems we cannot rebuild -- stays chunks, bit-exact.
 */
import type { Disk } from '../../container/disk.js';
import type { WritableStore } from '../../store/types.js';
import type { Digest } from '../../store/digest.js';
import { listVolumes } from '../../fs/volumes.js';
import { DiskSlice } from '../../container/slice.js';
import { walkFs } from '../../fs/ext4/walk.js';
import { Ext4Fs } from '../../fs/ext4/ext4.js';
import { ext4Params } from '../../fs/ext4/params.js';
import type { FileSystem } from '../../fs/types.js';
import { createChunker, parseChunkerSpec, type ChunkerParams } from '../chunker.js';
import { importChunks, type ChunkImportStats } from '../chunks/import.js';
import { FileContentDisk } from './file-content-disk.js';
import { StreamChunks } from '../stream-chunks.js';
import { complement, fileAwareLayout, mergeRanges } from '../chunks/file-layout.js';
import { encodeTree, pathKey, treeDigests, type TreeRecord } from '../../model/files-tree.js';
import type { PackageMatcher, PackagesReport } from '../packages/match.js';
import { packageObjects } from '../../model/package-ref.js';
import type { FsRebuild, Manifest } from '../../model/manifest.js';
import { throttle, type OnProgress } from '../../util/progress.js';
import { gcEvery } from '../../util/gc.js';
import { VmdnError } from '../../errors.js';

const FILES_IN_FLIGHT = 8;
/**
 * Trees and the small-file stream change by insertions here and there (a package adds a few
 * files in many directories): smaller chunks than for file data keep each insertion cheap.
 */
const TREE_CHUNKER: ChunkerParams = parseChunkerSpec('cdc:2k:8k:32k');
const SUMMED = ['dataBytes', 'chunks', 'newObjects', 'newBytes', 'newStoredBytes'] as const;

export interface FilesImportOptions {
  chunker: ChunkerParams;
  minFile: number;
  signal?: AbortSignal;
  onProgress?: OnProgress;
  onAdded?: (digest: Digest) => void;
  /** Packages strategy: a matcher for a filesystem's package files (undefined: it has no package database). */
  packages?: (fs: FileSystem) => Promise<PackageMatcher | undefined>;
}

export interface FilesImportResult {
  manifest: Manifest;
  stats: ChunkImportStats & { files: number; fileBytes: number; treeBytes: number };
  /** Every object the image references besides its manifest. */
  refs: Set<Digest>;
  notes: string[];
  /** Packages strategy: per rebuilt filesystem with a package database. */
  packages?: Array<{ index: number } & PackagesReport>;
}

export async function importFiles(disk: Disk, store: WritableStore, opts: FilesImportOptions): Promise<FilesImportResult> {
  const { signal } = opts;
  const { volumes } = await listVolumes(disk);
  const notes: string[] = [];
  const filesystems: FsRebuild[] = [];
  const refs = new Set<Digest>();
  let files = 0;
  let fileBytes = 0;
  let treeBytes = 0;
  const content: ChunkImportStats = { allocated: 0, dataBytes: 0, chunks: 0, distinctChunks: 0, newObjects: 0, newBytes: 0, newStoredBytes: 0 };
  const progress = throttle(opts.onProgress);
  const total = volumes.reduce((n, v) => n + (v.fs instanceof Ext4Fs ? v.fs.info.usedBytes : 0), 0);
  const reports: FilesImportResult['packages'] = [];
  for (const v of volumes) {
    if (!(v.fs instanceof Ext4Fs)) {
      notes.push(`volume ${v.index}: ${v.kind === 'error' ? `unreadable (${v.note})` : v.kind}: no rebuild for it, kept as chunks, bit-exact`);
      continue;
    }
    const dev = new DiskSlice(disk, v.offset, v.length);
    let records: TreeRecord[];
    const stream = new StreamChunks(TREE_CHUNKER, store, { signal, onAdded: opts.onAdded, onStored: (n, st) => {
      content.newObjects++;
      content.newBytes += n;
      content.newStoredBytes += st;
    } });
    const matcher = await opts.packages?.(v.fs);
    try {
      records = await recordTree(v.fs, dev, store, stream, { ...opts, matcher }, (s) => {
        fileBytes += s.allocated;
        for (const k of SUMMED) content[k] += s[k];
        progress?.({ phase: 'import', done: fileBytes, total, unit: 'bytes' });
      });
    } catch (err) {
      // something in this filesystem has no rebuild: keep the whole volume bit-exact instead
      if (!(err instanceof VmdnError) || err.code !== 'E_UNSUPPORTED') throw err;
      notes.push(`volume ${v.index}: ${err.message}: kept as chunks, bit-exact`);
      continue;
    }
    const streamChunks = await stream.finish();
    content.chunks += streamChunks.length;
    // renumbered before the tree is written: packages no file came from are left out
    const packages = matcher ? usedPackages(records, matcher) : undefined;
    const { tree, times } = encodeTree(records);
    const treeObjs = await putChunked(Buffer.from(tree), store, TREE_CHUNKER, opts);
    const timeObjs = await putChunked(Buffer.from(times), store, TREE_CHUNKER, opts);
    treeBytes += tree.length + times.length;
    for (const d of [...treeObjs, ...timeObjs, ...treeDigests(records), ...streamChunks.map((c) => c[2])]) refs.add(d);
    files += records.length;
    for (const p of packages ?? []) for (const d of packageObjects(p)) refs.add(d);
    filesystems.push({ index: v.index, offset: v.offset, length: v.length, type: 'ext4', params: await ext4Params(v.fs, dev), entries: records.length, tree: treeObjs, times: timeObjs, streamBytes: stream.length, stream: streamChunks, ...(packages ? { packages } : {}) });
    notes.push(`volume ${v.index}: ${v.fs.info.type}, ${records.length} entries recorded as files`);
    if (matcher) {
      const r = matcher.report;
      reports.push({ index: v.index, ...r });
      notes.push(`volume ${v.index}: ${r.files.package} files from ${r.used} of ${r.installed} installed packages; ${r.files.modified} modified package files, ${r.files.own + r.files.fallback} own files kept as objects`);
      for (const m of r.missing) notes.push(`volume ${v.index}: package ${m.name} ${m.version} (${m.arch}) is not on the mirror: its files are stored with the image`);
    }
  }
  // the rest of the disk: chunks, cut along files where another filesystem is readable
  const rebuilt = new Set(filesystems.map((f) => f.index));
  const layout = await fileAwareLayout(disk, { minFile: opts.minFile, signal, skipVolumes: rebuilt, volumes });
  const keep = complement(mergeRanges(filesystems.map((f) => [f.offset, f.offset + f.length])), disk.virtualSize);
  const { manifest, stats } = await importChunks(disk, store, { chunker: opts.chunker, signal, onAdded: opts.onAdded, layout: { cuts: layout.cuts, keep } });
  for (const c of manifest.chunks) refs.add(c[2]);
  manifest.filesystems = filesystems;
  // one set of figures for the whole image: the rest of the disk plus file contents
  for (const k of SUMMED) stats[k] += content[k];
  stats.distinctChunks = refs.size;
  return { manifest, stats: { ...stats, files, fileBytes, treeBytes }, refs, notes, ...(opts.packages ? { packages: reports } : {}) };
}

/** The packages the tree points at, renumbered densely (packages no file came from are left out). */
function usedPackages(records: TreeRecord[], matcher: PackageMatcher): FsRebuild['packages'] {
  const order = [...new Set(records.filter((r) => r.pkg !== undefined).map((r) => r.pkg!))].sort((a, b) => a - b);
  const renumber = new Map(order.map((k, i) => [k, i]));
  for (const r of records) if (r.pkg !== undefined) r.pkg = renumber.get(r.pkg);
  matcher.report.used = order.length;
  return order.map((k) => matcher.ingredients[k]!.ref);
}

/** Walk one filesystem into tree records, storing each file's content as chunks. */
async function recordTree(fs: FileSystem, dev: Disk, store: WritableStore, stream: StreamChunks, opts: FilesImportOptions & { matcher?: PackageMatcher }, onFile: (s: ChunkImportStats) => void): Promise<TreeRecord[]> {
  const { matcher } = opts;
  const fromPackage = async (r: TreeRecord, content: Disk): Promise<boolean> => {
    if (!matcher) return false;
    r.pkg = await matcher.match(pathKey(r.path), r.size!, content);
    if (r.pkg === undefined) return false;
    onFile({ allocated: r.size!, dataBytes: r.size!, chunks: 0, distinctChunks: 0, newObjects: 0, newBytes: 0, newStoredBytes: 0 });
    return true;
  };
  const records: TreeRecord[] = [];
  const firstOfInode = new Map<number, number>();
  const collect = gcEvery();
  // several files in flight: small files are dominated by latency, not bytes
  const inflight = new Set<Promise<void>>();
  let failed: unknown;
  for await (const { pathBytes, node, entry } of walkFs(fs)) {
    opts.signal?.throwIfAborted();
    if (failed) throw failed;
    if (pathBytes.includes(0)) throw new VmdnError('E_FORMAT', 'a file name holds a NUL byte: cannot be rebuilt', { path: Buffer.from(pathBytes).toString('latin1') });
    // a corrupt entry: its '/'-joined path would name another file (or none) on rebuild and in diffs
    if (entry?.nameBytes.includes(0x2f)) {
      const dir = Buffer.from(pathBytes.subarray(0, pathBytes.length - entry.nameBytes.length - 1)).toString() || '/';
      throw new VmdnError('E_FORMAT', `directory entry ${JSON.stringify(Buffer.from(entry.nameBytes).toString())} in ${dir} holds a '/' (corrupt filesystem): cannot be recorded as files`, { path: Buffer.from(pathBytes).toString() });
    }
    const r: TreeRecord = {
      path: pathBytes.subarray(pathBytes.length ? 1 : 0),
      type: node.type,
      perm: node.perm,
      uid: node.uid,
      gid: node.gid,
      times: { mtime: node.mtime, atime: node.atime, ctime: node.ctime, ...(node.crtime ? { crtime: node.crtime } : {}) },
    };
    if (node.type === 'file') {
      const first = node.nlink > 1 ? firstOfInode.get(node.ino) : undefined;
      if (first !== undefined) r.link = first;
      else {
        if (node.nlink > 1) firstOfInode.set(node.ino, records.length);
        r.size = node.size;
        if (node.size < opts.minFile) {
          // small: into the stream, in tree order (the walk is sequential, so the stream is too)
          const content = await FileContentDisk.open(fs, node, dev);
          if (await fromPackage(r, content)) {
            records.push(withMeta(r, await fs.xattrs(node)));
            continue;
          }
          r.streamOffset = stream.length;
          if (node.size) await stream.push(await content.read(0, node.size));
          onFile({ allocated: node.size, dataBytes: node.size, chunks: 0, distinctChunks: 0, newObjects: 0, newBytes: 0, newStoredBytes: 0 });
          records.push(withMeta(r, await fs.xattrs(node)));
          continue;
        }
        const p = (async () => {
          const content = await FileContentDisk.open(fs, node, dev);
          if (await fromPackage(r, content)) return;
          const { manifest, stats } = await importChunks(content, store, { chunker: opts.chunker, signal: opts.signal, onAdded: opts.onAdded, collect, maxInflight: 8 });
          r.chunks = manifest.chunks;
          onFile(stats);
        })().catch((err) => {
          failed ??= err;
        });
        inflight.add(p);
        p.finally(() => inflight.delete(p));
        if (inflight.size >= FILES_IN_FLIGHT) await Promise.race(inflight);
      }
    } else if (node.type === 'symlink') {
      r.target = Buffer.from(await fs.readlink(node));
    } else if (node.type === 'socket') {
      throw new VmdnError('E_UNSUPPORTED', `socket ${Buffer.from(pathBytes).toString()}: mke2fs -d cannot stage sockets`);
    } else if (node.rdev) {
      r.rdev = [node.rdev.major, node.rdev.minor];
    }
    records.push(withMeta(r, await fs.xattrs(node)));
  }
  await Promise.all(inflight);
  if (failed) throw failed;
  return records;
}

function withMeta(r: TreeRecord, x: Map<string, Uint8Array>): TreeRecord {
  if (x.size) r.xattrs = x;
  return r;
}

/** Store a byte string as chunks (so unchanged runs of a tree dedup across images). */
async function putChunked(bytes: Uint8Array, store: WritableStore, params: ChunkerParams, opts: FilesImportOptions): Promise<Digest[]> {
  const chunker = createChunker(params);
  const out: Digest[] = [];
  for (let pos = 0; pos < bytes.length; ) {
    const n = chunker.next(bytes.subarray(pos), true);
    const r = await store.put(bytes.subarray(pos, pos + n), { signal: opts.signal });
    if (r.added) opts.onAdded?.(r.digest);
    out.push(r.digest);
    pos += n;
  }
  return out;
}
