/**
 * A files-strategy filesystem read straight from the store: the recorded
 * tree as a FileSystem, contents fetched (and verified) object by object.
 * Lets inspect, ls, cat and diff work on a stored files-strategy image
 * without rebuilding it -- the rebuilt disk holds no bytes there until export.
 */
import type { DirEntry, FileExtent, FileSystem, FsInfo, FsNode } from '../../fs/types.js';
import type { ReadableStore } from '../../store/types.js';
import type { FsRebuild } from '../../model/manifest.js';
import { baseName, childrenOf, pathKey, type TreeRecord } from '../../model/files-tree.js';
import { readPackageFile } from '../packages/stage.js';
import { VmdnError } from '../../errors.js';
import { copyChunkPart } from '../stream-chunks.js';

const utf8 = new TextDecoder('utf-8', { fatal: false });

export class TreeFs implements FileSystem {
  readonly info: FsInfo;
  readonly warnings: string[] = [];
  private readonly children: Map<number, number[]>;
  private readonly nlink = new Map<number, number>();
  private readonly recent = new Map<string, Promise<Uint8Array>>();

  constructor(
    private readonly f: FsRebuild,
    private readonly records: TreeRecord[],
    private readonly store: ReadableStore,
  ) {
    this.children = childrenOf(records);
    records.forEach((_, i) => {
      const target = this.target(i);
      this.nlink.set(target, (this.nlink.get(target) ?? 0) + 1);
    });
    const p = f.params;
    this.info = {
      type: p.fsType, uuid: p.uuid, label: p.label, blockSize: p.blockSize, totalBytes: p.blocksCount * p.blockSize,
      usedBytes: records.reduce((n, r) => n + (r.size ?? 0), 0),
      details: { ...p, storedAs: 'files strategy: parameters + file tree; usedBytes counts file contents only' },
    };
  }

  /** Hard links resolve to the record holding the content. */
  private target(i: number): number {
    return this.records[i]!.link ?? i;
  }

  private node(i: number): FsNode {
    const t = this.target(i);
    const r = this.records[t]!;
    const kids = this.children.get(i) ?? [];
    return {
      ino: t + 1, type: r.type, perm: r.perm, uid: r.uid, gid: r.gid, size: r.size ?? (r.target ? r.target.length : 0),
      nlink: r.type === 'dir' ? 2 + kids.filter((k) => this.records[k]!.type === 'dir').length : this.nlink.get(t)!,
      mtime: r.times.mtime, atime: r.times.atime, ctime: r.times.ctime, ...(r.times.crtime ? { crtime: r.times.crtime } : {}),
      ...(r.rdev ? { rdev: { major: r.rdev[0], minor: r.rdev[1] } } : {}),
    };
  }

  private record(ino: number): TreeRecord {
    const r = this.records[ino - 1];
    if (!r) throw new VmdnError('E_NOT_FOUND', `no entry ${ino} in the stored tree`, { ino });
    return r;
  }

  async root(): Promise<FsNode> {
    return this.node(0);
  }

  async stat(ino: number): Promise<FsNode> {
    this.record(ino);
    return this.node(ino - 1);
  }

  async readdir(dir: FsNode): Promise<DirEntry[]> {
    if (this.record(dir.ino).type !== 'dir') throw new VmdnError('E_USAGE', 'not a directory', { ino: dir.ino });
    return (this.children.get(dir.ino - 1) ?? []).map((i) => {
      const name = baseName(this.records[i]!.path);
      return { nameBytes: name, name: utf8.decode(name), ino: this.target(i) + 1, type: this.records[i]!.type };
    });
  }

  async lookup(path: string): Promise<FsNode> {
    let cur = 0;
    for (const comp of path.split('/').filter(Boolean)) {
      const next = (this.children.get(cur) ?? []).find((i) => utf8.decode(baseName(this.records[i]!.path)) === comp);
      if (next === undefined) throw new VmdnError('E_NOT_FOUND', `${path}: not found`, { path });
      cur = next;
    }
    return this.node(cur);
  }

  async *readFile(node: FsNode, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    const r = this.record(node.ino);
    if (r.type !== 'file') throw new VmdnError('E_USAGE', 'not a regular file', { ino: node.ino });
    if (r.streamOffset !== undefined) {
      yield await this.streamRead(r.streamOffset, r.size!, signal);
      return;
    }
    if (r.pkg !== undefined) {
      const data = await readPackageFile(this.f.packages![r.pkg]!, pathKey(r.path), this, this.store, signal);
      if (data.length !== r.size) throw new VmdnError('E_MANIFEST', `${Buffer.from(r.path).toString()}: ${data.length} bytes in its package, the tree says ${r.size}`);
      yield data;
      return;
    }
    let pos = 0;
    for (const [o, l, d] of r.chunks!) {
      yield* zeros(o - pos); // a hole reads as zeros
      const data = await this.store.get(d, { signal });
      if (data.length !== l) throw new VmdnError('E_CORRUPT_OBJECT', `object ${d.slice(0, 12)} has ${data.length} bytes, the tree says ${l}`, { digest: d });
      yield data;
      pos = o + l;
    }
    yield* zeros(r.size! - pos);
  }

  /** Small files' bytes from the stream; walks read neighbours in turn, so recent chunks are kept. */
  private async streamRead(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    const out = Buffer.alloc(length);
    const st = this.f.stream;
    let lo = 0;
    let hi = st.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (st[mid]![0] + st[mid]![1] <= offset) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < st.length && st[i]![0] < offset + length; i++) {
      const d = st[i]![2];
      let data = this.recent.get(d);
      if (!data) {
        data = this.store.get(d, { signal });
        data.catch(() => this.recent.delete(d)); // a failed fetch is not remembered
        this.recent.set(d, data);
        if (this.recent.size > 32) this.recent.delete(this.recent.keys().next().value!);
      }
      copyChunkPart(out, offset, st[i]!, await data);
    }
    return out;
  }

  /** A file the packages strategy took from a package (it matched the package at import). */
  fromPackage(node: FsNode): boolean {
    return this.record(node.ino).pkg !== undefined;
  }

  async readlink(node: FsNode): Promise<string> {
    const r = this.record(node.ino);
    if (!r.target) throw new VmdnError('E_USAGE', 'not a symlink', { ino: node.ino });
    return utf8.decode(r.target);
  }

  async xattrs(node: FsNode): Promise<Map<string, Uint8Array>> {
    return new Map(this.record(node.ino).xattrs ?? []);
  }

  /** Not on any device: a stored tree has no block placement. */
  async fileExtents(): Promise<FileExtent[]> {
    return [];
  }

  async usedRanges(): Promise<Array<[number, number]>> {
    return [];
  }
}

function* zeros(n: number): Generator<Uint8Array> {
  for (; n > 0; n -= 1 << 20) yield new Uint8Array(Math.min(n, 1 << 20));
}
