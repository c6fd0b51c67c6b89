/**
 * Files strategy, export side: rebuild each recorded ext2/3/4 filesystem
 * (stage the tree, `mke2fs -d` with the recorded parameters, superblock
 * fixups through debugfs, recorded times patched into the inodes), then
 * write the disk: chunks everywhere else, the rebuilt filesystems at their
 * offsets, in ascending order for any writer.
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { DiskWriter } from '../../container/disk.js';
import { RawDisk } from '../../container/raw.js';
import { canPrefetch, type ReadableStore } from '../../store/types.js';
import type { Digest } from '../../store/digest.js';
import type { Ext4Fs } from '../../fs/ext4/ext4.js';
import { e2fsName, openFsImage, type FsImage } from '../../fs/ext4/image.js';
import { mke2fsArgs, superblockFixups } from '../../fs/ext4/params.js';
import { patchInodeTimes, type InodeTimes } from '../../fs/ext4/patch.js';
import { assembleChunks } from '../chunks/export.js';
import { baseName, pathKey, type TreeRecord } from '../../model/files-tree.js';
import { loadTree } from '../../model/objects.js';
import { planStage, stageParent, stageTree, type BigDirPlan, type StagePlan } from './stage.js';
import { makeStage, removeStaleStages, removeTree, type Stage } from './stage-dir.js';
import { emptyDirectory, installDirectory, type DirEntrySpec } from '../../fs/ext4/bigdir.js';
import type { FsRebuild, Manifest } from '../../model/manifest.js';
import { isZero } from '../../util/zero.js';
import { TreeFs } from './tree-fs.js';
import { packageObjects } from '../../model/package-ref.js';
import { throttle, type OnProgress } from '../../util/progress.js';
import { VmdnError } from '../../errors.js';
import { allocateDirect, directFiles, stagedInodes, writeDirect, type DirectPlan } from './direct.js';

export interface FilesExportOptions {
  signal?: AbortSignal;
  onProgress?: OnProgress;
  /** Where to stage trees and build filesystem images (default: the OS temp dir). */
  workDir?: string;
}

const BLOCK = 2 << 20;

export async function exportFiles(m: Manifest, store: ReadableStore, writer: DiskWriter, opts: FilesExportOptions = {}): Promise<{ bytesWritten: number }> {
  const work = await fsp.mkdtemp(path.join(opts.workDir ?? os.tmpdir(), 'vmdn-rebuild-'));
  const progress = throttle(opts.onProgress);
  const fss = [...(m.filesystems ?? [])].sort((a, b) => a.offset - b.offset);
  // stages a killed export left behind (they hold images' files) go before another is made
  if (fss.length) await removeStaleStages();
  /** Returns the file content bytes it wrote (the filesystem's own metadata comes on top). */
  const build = async (f: FsRebuild, img: FsImage): Promise<number> => {
    const records = await loadTree(f, store, opts.signal);
    const total = records.reduce((n, r) => n + (r.size ?? 0), 0);
    let done = 0;
    await buildExt4(f, records, store, img, path.join(work, `fs${f.index}`), opts.signal, (n) => {
      done += n;
      progress?.({ phase: 'export', done, total, unit: 'bytes' });
    });
    return total;
  };
  // assembleChunks finishes its writer: hand it one that only writes, and finish once here
  const inner: DiskWriter = { directTarget: writer.directTarget, write: (o, d) => writer.write(o, d), finish: async () => {}, abort: async () => {} };
  try {
    let bytesWritten = 0;
    if (writer.directTarget) {
      // a plain file at final offsets: the chunks (which never overlap a filesystem) go in
      // while each filesystem is made in place
      const chunks = assembleChunks(m, store, inner, { signal: opts.signal });
      chunks.catch(() => {}); // surfaced below
      try {
        for (const f of fss) {
          bytesWritten += await build(f, { file: writer.directTarget, offset: f.offset, length: f.length });
        }
      } catch (err) {
        await Promise.allSettled([chunks]);
        throw err;
      }
      bytesWritten += (await chunks).bytesWritten;
    } else {
      // writes must ascend: chunks below each filesystem, the filesystem (built aside), and on
      let c = 0;
      const chunksBefore = async (end: number) => {
        const start = c;
        while (c < m.chunks.length && m.chunks[c]![0] < end) c++;
        bytesWritten += (await assembleChunks({ ...m, chunks: m.chunks.slice(start, c) }, store, inner, { signal: opts.signal })).bytesWritten;
      };
      for (const f of fss) {
        await chunksBefore(f.offset);
        const file = path.join(work, `fs${f.index}.img`);
        await build(f, { file, offset: 0, length: f.params.blocksCount * f.params.blockSize });
        bytesWritten += await copyImage(file, f.offset, inner, opts.signal);
        await fsp.rm(file);
      }
      await chunksBefore(Infinity);
    }
    await writer.finish();
    return { bytesWritten };
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

/**
 * Build one filesystem into `img`. With `deferContent` the direct files' blocks are allocated but left
 * unwritten (zeros) and their plan returned: `vmdn nbd` reads their content from the chunks on demand.
 */
/**
 * For `vmdn nbd`: filesystem `f` built into `img` exactly as export builds it, except that the direct
 * files' content is not written (their blocks read as zeros): the returned records and plan say which
 * blocks hold which file's chunks, for the reader to fetch on demand. Small files, package files and
 * the tree are read from `store` now. Returns no plan when no file is direct.
 */
export async function buildFsMetadata(f: FsRebuild, store: ReadableStore, img: FsImage, workDir: string, signal?: AbortSignal): Promise<{ records: TreeRecord[]; direct?: DirectPlan }> {
  await removeStaleStages();
  const records = await loadTree(f, store, signal);
  const direct = await buildExt4(f, records, store, img, path.join(workDir, `fs${f.index}`), signal, () => {}, true);
  return { records, direct };
}

async function buildExt4(f: FsRebuild, records: TreeRecord[], store: ReadableStore, img: FsImage, dir: string, signal: AbortSignal | undefined, onBytes: (n: number) => void, deferContent = false): Promise<DirectPlan | undefined> {
  if (process.getuid?.() !== 0) throw new VmdnError('E_UNSUPPORTED', 'rebuilding a filesystem needs root (ownership and device nodes are staged on the host); run as root or under fakeroot');
  await fsp.mkdir(dir, { recursive: true });
  const bytes = records.reduce((n, r) => n + (r.size ?? 0) + 256, 0);
  const p = f.params;
  const plan = planStage(records, p.blockSize, p.features.includes('metadata_csum'));
  // big files' content skips the stage and mke2fs: written into blocks allocated after it
  const sizeOnly = directFiles(records, p);
  // the objects go through the page cache ahead of the workers (cold disks: the workers would wait on reads)
  const ahead = new AbortController();
  const onAbort = () => ahead.abort();
  signal?.addEventListener('abort', onAbort);
  const prefetched = canPrefetch(store) ? store.prefetch(prefetchOrder(records, f.stream, deferContent ? sizeOnly : undefined), { signal: ahead.signal, maxBytes: Math.min(os.freemem() / 4, 4 * 2 ** 30) }) : Promise.resolve();
  try {
    const stage = await makeStage(stageParent(bytes, dir));
    return await buildWith(f, p, records, plan, sizeOnly, stage, dir, store, img, signal, onBytes, deferContent);
  } finally {
    ahead.abort();
    signal?.removeEventListener('abort', onAbort);
    await prefetched;
  }
}

/** Small-file stream first (staged first), then big files' chunks in record order (but those of `skip`). */
function* prefetchOrder(records: TreeRecord[], stream: FsRebuild['stream'], skip?: Set<number>): Generator<Digest> {
  for (const c of stream) yield c[2];
  for (const [i, r] of records.entries()) if (r.link === undefined && !skip?.has(i)) for (const c of r.chunks ?? []) yield c[2];
}

async function buildWith(f: FsRebuild, p: FsRebuild['params'], records: TreeRecord[], plan: StagePlan, sizeOnly: Set<number>, stage: Stage, dir: string, store: ReadableStore, img: FsImage, signal: AbortSignal | undefined, onBytes: (n: number) => void, deferContent: boolean): Promise<DirectPlan | undefined> {
  const clock = rebuildClock(records);
  try {
    await stageTree(records, plan, stage, store, f.stream, { signal, onBytes, packages: f.packages, tree: new TreeFs(f, records, store), workDir: dir, sizeOnly });
    await run('mke2fs', [...mke2fsArgs(p, img.offset), '-d', stage.root, img.file, String(p.blocksCount)], signal, undefined, clock);
  } catch (err) {
    await removeTree(stage.dir);
    throw err;
  }
  // the stage goes in another process while this one finishes the filesystem (tens of thousands of unlinks)
  const removed = removeTree(stage.dir);
  let content: Promise<void> = Promise.resolve();
  let direct: DirectPlan | undefined;
  try {
    // before the fixups: debugfs frees blocks (big directories' scaffolding) that would then hold stale bytes
    const scaffold = new Set(['lost+found', ...plan.bigDirs.flatMap((b) => [b.hold, b.reserve])]);
    const inos = await stagedInodes(img, plan.where, scaffold);
    if (sizeOnly.size) {
      direct = await allocateDirect(img, records, inos, sizeOnly, p);
      if (!deferContent) {
        content = writeDirect(img, direct, store, signal, onBytes);
        content.catch(() => {}); // surfaced below
      }
    }
    const fixups = superblockFixups(p);
    for (const b of plan.bigDirs) fixups.push(...(await finishBigDir(img, records, b)));
    if (!records.some((r) => pathKey(r.path) === 'lost+found')) fixups.push('rmdir /lost+found');
    await run('debugfs', ['-w', '-f', '-', e2fsName(img)], signal, fixups.join('\n') + '\n', clock);
    await patchInodeTimes(img, timesByInode(records, inos));
  } catch (err) {
    await Promise.allSettled([content]);
    throw err;
  } finally {
    await removed;
  }
  await content;
  return direct;
}

/** Resolve a raw path (no leading slash) to its inode, matching names byte for byte. */
async function resolveIno(fs: Ext4Fs, p: Uint8Array): Promise<number> {
  let node = await fs.root();
  for (const comp of p.length ? pathKey(p).split('/') : []) {
    const e = (await fs.readdir(node)).find((x) => pathKey(x.nameBytes) === comp);
    if (!e) throw new VmdnError('E_INTERNAL', `rebuilt filesystem lacks ${Buffer.from(p).toString()}`);
    node = await fs.stat(e.ino);
  }
  return node.ino;
}

/** Write a big directory in full (ext4-bigdir) and return the debugfs commands that drop its scaffolding. */
async function finishBigDir(img: FsImage, records: TreeRecord[], b: BigDirPlan): Promise<string[]> {
  const opened = await openFsImage(img);
  const name = (i: number) => Buffer.from(baseName(records[i]!.path));
  let dirIno: number, parentIno: number, reserveIno: number, holdIno: number;
  const holdInos: number[] = [];
  const entries: DirEntrySpec[] = [];
  try {
    const fs = opened.fs;
    const dirPath = records[b.dir]!.path;
    const slash = dirPath.lastIndexOf(0x2f);
    dirIno = await resolveIno(fs, dirPath);
    parentIno = dirPath.length ? await resolveIno(fs, slash < 0 ? new Uint8Array(0) : dirPath.subarray(0, slash)) : dirIno;
    reserveIno = await resolveIno(fs, Buffer.from(b.reserve));
    holdIno = await resolveIno(fs, Buffer.from(b.hold));
    const listing = async (ino: number) => new Map((await fs.readdir(await fs.stat(ino))).map((e) => [pathKey(e.nameBytes), e.ino] as const));
    const direct = await listing(dirIno);
    const held: Array<Map<string, number>> = [];
    for (let k = 0; k < b.holdDirs; k++) {
      holdInos.push(await resolveIno(fs, Buffer.from(`${b.hold}/${k}`)));
      held.push(await listing(holdInos[k]!));
    }
    entries.push({ name: Buffer.from('.'), ino: dirIno, type: 'dir' }, { name: Buffer.from('..'), ino: parentIno, type: 'dir' });
    for (const i of b.children) {
      const k = b.parked.get(i);
      const ino = (k === undefined ? direct : held[k]!).get(pathKey(name(i)));
      if (ino === undefined) throw new VmdnError('E_INTERNAL', `rebuilt filesystem lacks ${Buffer.from(records[i]!.path).toString()}`);
      entries.push({ name: name(i), ino, type: records[i]!.type });
    }
  } finally {
    await opened.close();
  }
  await installDirectory(img, dirIno, reserveIno, entries);
  for (const ino of holdInos) await emptyDirectory(img, ino, holdIno);
  return [...holdInos.map((_, k) => `rmdir /${b.hold}/${k}`), `rmdir /${b.hold}`, `rm /${b.reserve}`];
}

/** Recorded times by the rebuilt filesystem's inode numbers (hard links share theirs). */
function timesByInode(records: TreeRecord[], inos: number[]): Map<number, InodeTimes> {
  return new Map(records.map((r, i) => [inos[i]!, r.times] as const));
}

async function copyImage(file: string, base: number, writer: DiskWriter, signal?: AbortSignal): Promise<number> {
  const disk = await RawDisk.open(file);
  let written = 0;
  try {
    for await (const e of disk.extents(signal)) {
      if (e.kind !== 'data') continue;
      for (let off = e.offset; off < e.offset + e.length; off += BLOCK) {
        signal?.throwIfAborted();
        const data = await disk.read(off, Math.min(BLOCK, e.offset + e.length - off));
        if (isZero(data)) continue;
        await writer.write(base + off, data);
        written += data.length;
      }
    }
  } finally {
    await disk.close();
  }
  return written;
}

/**
 * The time e2fsprogs stamps what the tree does not record (superblock mkfs,
 * write and check times, reserved inodes such as the journal's): the tree's
 * latest ctime, so that a rebuild writes the same bytes whenever it runs
 * (`vmdn nbd` serves what export writes; two exports compare equal).
 */
function rebuildClock(records: TreeRecord[]): NodeJS.ProcessEnv {
  let t = 1;
  for (const r of records) t = Math.max(t, r.times.ctime.sec);
  return { ...process.env, E2FSPROGS_FAKE_TIME: String(Math.min(t, 2 ** 32 - 1)) };
}

function run(cmd: string, args: string[], signal?: AbortSignal, input?: string, env?: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'], signal, env });
    let err = '';
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', (e) => reject(new VmdnError('E_IO', `${cmd}: ${e.message}`, { cmd }, { cause: e })));
    child.on('close', (code) => (code === 0 ? resolve() : reject(new VmdnError('E_IO', `${cmd} failed (exit ${code}): ${err.trim().split('\n').slice(-3).join('; ')}`, { cmd, code }))));
    if (child.stdin) {
      // a command that exits without reading all of its input fails by its exit code, not by EPIPE here
      child.stdin.on('error', () => {});
      child.stdin.end(input);
    }
  });
}
