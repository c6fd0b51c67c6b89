/**
 * Read-only ext2/3/4 reader over a Disk (usually a partition slice). Nothing
 * from the image is ever resolved against the host filesystem: names are
 * bytes, paths are walked inside the image only, symlinks are never followed.
 */
import type { Disk } from '../../container/disk.js';
import { VmdnError } from '../../errors.js';
import * as L from './layout.js';
import { Ext4Io, formatError } from './io.js';
import { parseSuperblock, hex, type Ext4Super } from './superblock.js';
import { loadGroupDescs, usedRanges, type GroupDescs } from './groups.js';
import { InodeTable, toFsNode, type Inode } from './inode.js';
import { mapBlocks } from './extents.js';
import { parseDirEntries, parseInlineDir, verifyDirBlock, isDotOrDotDot, type RawDirEntry } from './dir.js';
import { inodeXattrs, blockXattrs, aclToXattr } from './xattr.js';
import { planSegments, streamSegments, MAX_READ } from './read.js';
import { featureNames } from './features.js';
import type { DirEntry, FileExtent, FileSystem, FsInfo, FsNode, FsProbe } from '../types.js';

export const ROOT_INO = 2;
const XATTR_SIZE_MAX = 65536;
const decoder = new TextDecoder('utf-8', { fatal: false });

export class Ext4Fs implements FileSystem {
  readonly info: FsInfo;
  readonly warnings: string[];
  private readonly inodes: InodeTable;
  constructor(
    private readonly io: Ext4Io,
    private readonly gd: GroupDescs,
  ) {
    const sb = io.sb;
    this.warnings = io.warnings;
    this.inodes = new InodeTable(io, gd);
    this.info = {
      type: sb.fsType,
      uuid: sb.uuid,
      label: sb.label,
      blockSize: sb.blockSize,
      totalBytes: sb.blocksCount * sb.blockSize,
      usedBytes: Math.max(0, sb.blocksCount - sb.freeBlocks) * sb.blockSize,
      details: {
        features: featureNames(sb),
        inodeSize: sb.inodeSize,
        inodesCount: sb.inodesCount,
        descSize: sb.descSize,
        groupCount: sb.groupCount,
        clusterSize: sb.blockSize * sb.clusterRatio,
        hashSeed: hex(sb.hashSeed),
        defHashVersion: sb.defHashVersion,
        metadataCsum: sb.csumSeed !== undefined,
      },
    };
  }

  get superblock(): Ext4Super {
    return this.io.sb;
  }

  /** Byte offset of an inode on the device. */
  inodeOffset(ino: number): number {
    return this.inodes.locate(ino);
  }

  /** The per-filesystem crc32c seed, when the filesystem has metadata checksums. */
  get csumSeed(): number | undefined {
    return this.io.sb.csumSeed;
  }

  inode(ino: number): Promise<Inode> {
    return this.inodes.get(ino);
  }

  root(): Promise<FsNode> {
    return this.stat(ROOT_INO);
  }

  async stat(ino: number): Promise<FsNode> {
    return toFsNode(await this.inodes.get(ino));
  }

  /** Inline data (files, dirs, symlinks): i_block then the system.data xattr. */
  private inlineData(inode: Inode): { head: Uint8Array; rest: Uint8Array | undefined } {
    const rest = inodeXattrs(inode).find((x) => x.name === 'system.data')?.value;
    return { head: inode.block, rest };
  }

  /** Entries other than '.' and '..' ('..' is handled by lookup on its own path stack). */
  async readdir(dir: FsNode): Promise<DirEntry[]> {
    const inode = await this.inodes.get(dir.ino);
    if (inode.type !== 'dir') throw new VmdnError('E_USAGE', `ext4 inode ${inode.ino}: not a directory`);
    const raw: RawDirEntry[] = [];
    if (inode.flags & L.INODE_INLINE_DATA_FL) {
      const { head, rest } = this.inlineData(inode);
      parseInlineDir(this.io, head, rest, inode.ino, raw);
    } else {
      const bs = this.io.bs;
      const runs = await mapBlocks(this.io, inode);
      const nBlocks = Math.ceil(inode.size / bs);
      for (const r of runs) {
        if (r.uninit) continue; // unwritten blocks hold no entries
        const len = Math.min(r.length, nBlocks - r.logical);
        for (let done = 0; done < len; ) {
          const n = Math.min(len - done, MAX_READ / bs);
          const buf = await this.io.readBlocks(r.physical + done, n, `directory ${inode.ino}`);
          for (let i = 0; i < n; i++) {
            const blk = buf.subarray(i * bs, (i + 1) * bs);
            const where = `directory block ${r.logical + done + i}`;
            verifyDirBlock(this.io, blk, inode.csumSeed, inode.ino, r.physical + done + i);
            parseDirEntries(this.io, blk, 0, bs, inode.ino, where, raw);
          }
          done += n;
        }
      }
    }
    const out: DirEntry[] = [];
    for (const e of raw) {
      if (isDotOrDotDot(e.nameBytes)) continue;
      out.push({ ...e, type: e.type ?? (await this.inodes.get(e.ino)).type });
    }
    return out;
  }

  async lookup(path: string): Promise<FsNode> {
    const stack: FsNode[] = [await this.root()];
    const enc = new TextEncoder();
    for (const comp of path.split('/')) {
      if (comp === '' || comp === '.') continue;
      if (comp === '..') {
        if (stack.length > 1) stack.pop(); // never above the image's root
        continue;
      }
      const cur = stack[stack.length - 1];
      if (cur.type !== 'dir') throw new VmdnError('E_NOT_FOUND', `ext4: ${path}: not a directory before '${comp}'`, { path });
      const want = enc.encode(comp);
      const hit = (await this.readdir(cur)).find((e) => e.nameBytes.length === want.length && e.nameBytes.every((b, i) => b === want[i]));
      if (!hit) throw new VmdnError('E_NOT_FOUND', `ext4: ${path}: no such file or directory`, { path });
      stack.push(await this.stat(hit.ino));
    }
    return stack[stack.length - 1];
  }

  async *readFile(node: FsNode, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    const inode = await this.inodes.get(node.ino);
    if (inode.type !== 'file') throw new VmdnError('E_USAGE', `ext4 inode ${inode.ino}: not a regular file`);
    yield* this.content(inode, signal);
  }

  private async *content(inode: Inode, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    if (inode.flags & L.INODE_INLINE_DATA_FL) {
      yield this.inlineBytes(inode);
      return;
    }
    const runs = await mapBlocks(this.io, inode);
    yield* streamSegments(this.io, planSegments(runs, this.io.bs, inode.size), signal);
  }

  private inlineBytes(inode: Inode): Uint8Array {
    const { head, rest } = this.inlineData(inode);
    const avail = head.length + (rest?.length ?? 0);
    if (inode.size > avail) throw formatError(inode.ino, `inline data size ${inode.size} exceeds the ${avail} bytes stored`);
    const out = new Uint8Array(inode.size);
    out.set(head.subarray(0, Math.min(head.length, inode.size)));
    if (rest && inode.size > head.length) out.set(rest.subarray(0, inode.size - head.length), head.length);
    return out;
  }

  private async bytes(inode: Inode, max: number): Promise<Uint8Array> {
    if (inode.size > max) throw formatError(inode.ino, `size ${inode.size} exceeds ${max}`);
    const parts: Uint8Array[] = [];
    for await (const p of this.content(inode)) parts.push(p);
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  async readlink(node: FsNode): Promise<string> {
    const inode = await this.inodes.get(node.ino);
    if (inode.type !== 'symlink') throw new VmdnError('E_USAGE', `ext4 inode ${inode.ino}: not a symlink`);
    const eaSectors = inode.fileAcl ? (this.io.bs * this.io.sb.clusterRatio) / 512 : 0;
    // As the kernel decides: no inline data and no data blocks means the target sits in i_block.
    if (!(inode.flags & L.INODE_INLINE_DATA_FL) && inode.sectors - eaSectors === 0) {
      if (inode.size >= 60) throw formatError(inode.ino, `fast symlink of size ${inode.size} >= 60`);
      return decoder.decode(inode.block.subarray(0, inode.size));
    }
    return decoder.decode(await this.bytes(inode, 65536));
  }

  async xattrs(node: FsNode): Promise<Map<string, Uint8Array>> {
    const inode = await this.inodes.get(node.ino);
    const out = new Map<string, Uint8Array>();
    for (const x of [...inodeXattrs(inode), ...(await blockXattrs(this.io, inode))]) {
      if (x.name === 'system.data') continue; // inline data, not an attribute (the kernel hides it too)
      let v = x.value;
      if (v === undefined) {
        if (x.valueSize > XATTR_SIZE_MAX) throw formatError(inode.ino, `xattr ${x.name}: value size ${x.valueSize} too large`);
        const vi = await this.inodes.get(x.valueInum!);
        if (vi.type !== 'file' || !(vi.flags & L.INODE_EA_INODE_FL)) throw formatError(inode.ino, `xattr ${x.name}: value inode ${vi.ino} is not an EA inode`);
        v = (await this.bytes(vi, XATTR_SIZE_MAX)).subarray(0, x.valueSize);
      }
      if (x.name === 'system.posix_acl_access' || x.name === 'system.posix_acl_default') v = aclToXattr(v, inode.ino);
      out.set(x.name, v);
    }
    return out;
  }

  /** Where a regular file's initialized data lives; holes, unwritten extents and inline data have no extents. */
  async fileExtents(node: FsNode): Promise<FileExtent[]> {
    const inode = await this.inodes.get(node.ino);
    const bs = this.io.bs;
    const out: FileExtent[] = [];
    for (const r of await mapBlocks(this.io, inode)) {
      const fileOffset = r.logical * bs;
      if (fileOffset >= inode.size) break;
      if (r.uninit) continue;
      out.push({ fileOffset, deviceOffset: r.physical * bs, length: Math.min(r.length * bs, inode.size - fileOffset) });
    }
    return out;
  }

  usedRanges(): Promise<Array<[number, number]>> {
    return usedRanges(this.io, this.gd);
  }
}

export async function openExt4(disk: Disk): Promise<Ext4Fs> {
  if (disk.virtualSize < 2048) throw new VmdnError('E_FORMAT', `ext4: device of ${disk.virtualSize} bytes is too small`);
  const warnings: string[] = [];
  const sb = parseSuperblock(await disk.read(L.SUPERBLOCK_OFFSET, 1024), disk.virtualSize, warnings);
  const io = new Ext4Io(disk, sb, warnings);
  const fs = new Ext4Fs(io, await loadGroupDescs(io));
  const root = await fs.root();
  if (root.type !== 'dir') throw formatError(ROOT_INO, 'root is not a directory');
  return fs;
}

/** FsProbe: an Ext4Fs if the superblock magic matches, else undefined. */
export const probeExt4: FsProbe = async (disk) => {
  if (disk.virtualSize < 2048) return undefined;
  const b = await disk.read(L.SUPERBLOCK_OFFSET + 0x38, 2);
  if ((b[0] | (b[1] << 8)) !== L.EXT4_MAGIC) return undefined;
  return openExt4(disk);
};
