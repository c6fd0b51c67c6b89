/**
 * Read-only FAT12/16/32 (with VFAT long names) implementing FileSystem.
 * Node identity: the device offset of a node's directory entry (/32, +2), the
 * root is 1, so stat(ino) can always re-read the entry without state. Every
 * cluster chain is walked with loop and range checks before it is used.
 */
import type { Disk } from '../../container/disk.js';
import type { DirEntry, FileExtent, FileSystem, FsInfo, FsNode } from '../types.js';
import { parseGeometry, type FatGeometry } from './layout.js';
import { parseDir, fatTime, DirEntryStruct, ATTR_DIR, ATTR_LFN, ATTR_READONLY, ATTR_VOLUME, type RawDirEntry, type FatDirent } from './dir.js';
import { VmdnError, check } from '../../errors.js';

const ROOT_INO = 1;
/** The FAT spec caps a directory at 65536 entries. */
const MAX_DIR_BYTES = 65536 * 32;
/** Whole FAT kept in memory; larger FATs (multi-TB volumes) are refused rather than paged. */
const MAX_FAT_BYTES = 256 << 20;
const READ_CHUNK = 1 << 20;

export class FatFs implements FileSystem {
  readonly warnings: string[] = [];
  info!: FsInfo;
  private fat!: Uint8Array;
  private readonly entries = new Map<number, RawDirEntry>();
  private readonly eoc: number;
  private readonly bad: number;

  private constructor(private readonly disk: Disk, readonly geo: FatGeometry) {
    this.eoc = geo.fatType === 12 ? 0xff8 : geo.fatType === 16 ? 0xfff8 : 0x0ffffff8;
    this.bad = this.eoc - 1;
  }

  static async open(disk: Disk): Promise<FatFs> {
    check(disk.virtualSize >= 512, 'E_FORMAT', 'device too small for FAT');
    const geo = parseGeometry(await disk.read(0, 512), disk.virtualSize);
    const fs = new FatFs(disk, geo);
    const used = geo.fatType === 12 ? Math.ceil(((geo.clusterCount + 2) * 3) / 2) : (geo.clusterCount + 2) * (geo.fatType / 8);
    if (used > MAX_FAT_BYTES) throw new VmdnError('E_UNSUPPORTED', `FAT of ${used} bytes is too large to load`);
    fs.fat = await disk.read(geo.fatOffset + geo.activeFat * geo.fatBytes, used);
    let usedClusters = 0;
    for (let c = 2; c < geo.clusterCount + 2; c++) if (fs.entryOf(c) !== 0) usedClusters++;
    const root = await fs.readDirBytes(ROOT_INO, geo.rootCluster);
    const label = parseDir(root.buf, root.devOffset, geo.fatType, fs.warnings).label ?? geo.bpbLabel;
    const id = geo.volumeId.toString(16).toUpperCase().padStart(8, '0');
    fs.info = {
      type: 'vfat', uuid: `${id.slice(0, 4)}-${id.slice(4)}`, label: label === 'NO NAME' ? '' : label,
      blockSize: geo.clusterSize, totalBytes: geo.clusterCount * geo.clusterSize, usedBytes: usedClusters * geo.clusterSize,
      details: { fatType: geo.fatType, clusterCount: geo.clusterCount, numFats: geo.numFats, bytesPerSector: geo.bytesPerSector },
    };
    return fs;
  }

  private entryOf(c: number): number {
    const f = this.fat;
    switch (this.geo.fatType) {
      case 12: { const o = (c * 3) >> 1; const v = f[o] | (f[o + 1] << 8); return c & 1 ? v >> 4 : v & 0xfff; }
      case 16: return f[c * 2] | (f[c * 2 + 1] << 8);
      default: return (f[c * 4] | (f[c * 4 + 1] << 8) | (f[c * 4 + 2] << 16) | (f[c * 4 + 3] << 24)) & 0x0fffffff;
    }
  }

  private validCluster(c: number): boolean {
    return c >= 2 && c < this.geo.clusterCount + 2;
  }

  /** The cluster chain from `first`; E_FORMAT on loops, free/bad/out-of-range links, or `limit` exceeded. */
  chain(first: number, limit = this.geo.clusterCount): number[] {
    check(this.validCluster(first), 'E_FORMAT', `cluster ${first} is out of range`);
    const out: number[] = [];
    const seen = new Set<number>();
    let c = first;
    for (;;) {
      check(!seen.has(c), 'E_FORMAT', `cluster chain from ${first} loops at cluster ${c}`);
      check(out.length < limit, 'E_FORMAT', `cluster chain from ${first} is longer than ${limit} clusters`);
      seen.add(c);
      out.push(c);
      const v = this.entryOf(c);
      if (v >= this.eoc) return out;
      check(v !== 0, 'E_FORMAT', `cluster chain from ${first} runs into free cluster (at ${c})`);
      check(v !== this.bad, 'E_FORMAT', `cluster chain from ${first} runs into a bad cluster (at ${c})`);
      check(this.validCluster(v), 'E_FORMAT', `cluster ${c} links to out-of-range cluster ${v}`);
      c = v;
    }
  }

  private clusterOffset(c: number): number {
    return this.geo.dataOffset + (c - 2) * this.geo.clusterSize;
  }

  /** Contiguous device runs of a chain: [deviceOffset, clusters]. */
  private runs(chain: number[]): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (let i = 0; i < chain.length; ) {
      let j = i + 1;
      while (j < chain.length && chain[j] === chain[j - 1] + 1) j++;
      out.push([this.clusterOffset(chain[i]), j - i]);
      i = j;
    }
    return out;
  }

  private async readDirBytes(ino: number, first: number): Promise<{ buf: Uint8Array; devOffset: (i: number) => number }> {
    const g = this.geo;
    if (ino === ROOT_INO && g.fatType !== 32) {
      const buf = await this.disk.read(g.rootDirOffset, g.rootDirBytes);
      return { buf, devOffset: (i) => g.rootDirOffset + i };
    }
    if (first === 0) return { buf: new Uint8Array(0), devOffset: (i) => i };
    const chain = this.chain(first, Math.max(1, Math.floor(MAX_DIR_BYTES / g.clusterSize)));
    const parts: Uint8Array[] = [];
    for (const [off, n] of this.runs(chain)) parts.push(await this.disk.read(off, n * g.clusterSize));
    const buf = Buffer.concat(parts);
    return { buf, devOffset: (i) => this.clusterOffset(chain[Math.floor(i / g.clusterSize)]) + (i % g.clusterSize) };
  }

  private rootNode(): FsNode {
    const z = { sec: 0, nsec: 0 };
    const size = this.geo.fatType === 32 ? this.chain(this.geo.rootCluster).length * this.geo.clusterSize : this.geo.rootDirBytes;
    return { ino: ROOT_INO, type: 'dir', perm: 0o755, uid: 0, gid: 0, size, nlink: 2, atime: z, mtime: z, ctime: z };
  }

  private firstCluster(e: RawDirEntry): number {
    return ((this.geo.fatType === 32 ? e.clusterHi << 16 : 0) | e.clusterLo) >>> 0;
  }

  private nodeOf(ino: number, e: RawDirEntry): FsNode {
    const dir = (e.attr & ATTR_DIR) !== 0;
    const first = this.firstCluster(e);
    let perm = dir ? 0o755 : 0o644;
    if (e.attr & ATTR_READONLY) perm &= ~0o222;
    const size = dir ? (first === 0 ? 0 : this.chain(first).length * this.geo.clusterSize) : e.size;
    const mtime = fatTime(e.wrtDate, e.wrtTime);
    return {
      ino, type: dir ? 'dir' : 'file', perm, uid: 0, gid: 0, size, nlink: dir ? 2 : 1,
      atime: fatTime(e.accDate, 0), mtime, ctime: mtime, crtime: fatTime(e.crtDate, e.crtTime, e.crtTenths),
    };
  }

  async root(): Promise<FsNode> {
    return this.rootNode();
  }

  async stat(ino: number): Promise<FsNode> {
    if (ino === ROOT_INO) return this.rootNode();
    let e = this.entries.get(ino);
    if (!e) {
      const off = (ino - 2) * 32;
      if (!Number.isSafeInteger(ino) || off < this.geo.rootDirOffset || off + 32 > this.geo.totalBytes) throw new VmdnError('E_NOT_FOUND', `no FAT node ${ino}`);
      e = DirEntryStruct.parse(await this.disk.read(off, 32));
      const b0 = e.name[0];
      if (b0 === 0 || b0 === 0xe5 || (e.attr & 0x3f) === ATTR_LFN || (e.attr & ATTR_VOLUME)) throw new VmdnError('E_NOT_FOUND', `no FAT node ${ino}`);
      this.entries.set(ino, e);
    }
    return this.nodeOf(ino, e);
  }

  private async list(dir: FsNode): Promise<FatDirent[]> {
    if (dir.type !== 'dir') throw new VmdnError('E_USAGE', `node ${dir.ino} is not a directory`);
    let first = this.geo.rootCluster;
    if (dir.ino !== ROOT_INO) {
      const e = this.entries.get(dir.ino) ?? (await this.stat(dir.ino), this.entries.get(dir.ino));
      first = e ? this.firstCluster(e) : 0;
    }
    const { buf, devOffset } = await this.readDirBytes(dir.ino, first);
    const { entries } = parseDir(buf, devOffset, this.geo.fatType, this.warnings);
    for (const d of entries) this.entries.set(d.entryOffset / 32 + 2, d.entry);
    return entries;
  }

  async readdir(dir: FsNode): Promise<DirEntry[]> {
    return (await this.list(dir)).map((d) => ({
      name: d.name, nameBytes: Buffer.from(d.name, 'utf8'), ino: d.entryOffset / 32 + 2,
      type: d.entry.attr & ATTR_DIR ? 'dir' : 'file',
    }));
  }

  async lookup(path: string): Promise<FsNode> {
    const stack: FsNode[] = [this.rootNode()];
    for (const part of path.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') { if (stack.length > 1) stack.pop(); continue; }
      const cur = stack[stack.length - 1];
      if (cur.type !== 'dir') throw new VmdnError('E_NOT_FOUND', `${path}: not a directory`);
      const list = await this.list(cur);
      // FAT names are case-insensitive; an exact match wins over a folded one.
      const up = part.toUpperCase();
      const hit = list.find((d) => d.name === part) ?? list.find((d) => d.name.toUpperCase() === up || d.shortName.toUpperCase() === up);
      if (!hit) throw new VmdnError('E_NOT_FOUND', `${path}: not found`);
      stack.push(this.nodeOf(hit.entryOffset / 32 + 2, hit.entry));
    }
    return stack[stack.length - 1];
  }

  async fileExtents(node: FsNode): Promise<FileExtent[]> {
    if (node.type !== 'file') throw new VmdnError('E_USAGE', `node ${node.ino} is not a regular file`);
    if (node.size === 0) return [];
    const e = this.entries.get(node.ino) ?? (await this.stat(node.ino), this.entries.get(node.ino));
    const first = e ? this.firstCluster(e) : 0;
    check(first !== 0, 'E_FORMAT', `file node ${node.ino} has data but no first cluster`);
    const cs = this.geo.clusterSize;
    const chain = this.chain(first);
    const need = Math.ceil(node.size / cs);
    check(chain.length >= need, 'E_FORMAT', `file node ${node.ino}: ${chain.length} clusters hold less than its ${node.size} bytes`);
    if (chain.length > need) this.warnings.push(`file node ${node.ino}: chain has ${chain.length - need} clusters beyond its size`);
    const out: FileExtent[] = [];
    let fileOffset = 0;
    for (const [deviceOffset, n] of this.runs(chain.slice(0, need))) {
      const length = Math.min(n * cs, node.size - fileOffset);
      out.push({ fileOffset, deviceOffset, length });
      fileOffset += length;
    }
    return out;
  }

  async *readFile(node: FsNode, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    for (const x of await this.fileExtents(node)) {
      for (let o = 0; o < x.length; o += READ_CHUNK) {
        signal?.throwIfAborted();
        yield await this.disk.read(x.deviceOffset + o, Math.min(READ_CHUNK, x.length - o));
      }
    }
  }

  async readlink(node: FsNode): Promise<string> {
    throw new VmdnError('E_UNSUPPORTED', `FAT has no symbolic links (node ${node.ino})`);
  }

  async xattrs(): Promise<Map<string, Uint8Array>> {
    return new Map();
  }

  async usedRanges(): Promise<Array<[number, number]>> {
    const out: Array<[number, number]> = [[0, this.geo.dataOffset]];
    for (let c = 2; c < this.geo.clusterCount + 2; c++) {
      if (this.entryOf(c) === 0) continue;
      const s = this.clusterOffset(c), e = s + this.geo.clusterSize;
      const last = out[out.length - 1];
      if (last[1] === s) last[1] = e;
      else out.push([s, e]);
    }
    return out;
  }
}

export function openFat(disk: Disk): Promise<FatFs> {
  return FatFs.open(disk);
}
