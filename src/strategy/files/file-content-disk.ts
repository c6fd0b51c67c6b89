/**
 * A regular file's content seen as a Disk: offset = file offset, data extents
 * where the file has blocks, holes where it is sparse. Lets the files
 * strategy cut file content with the same importer, and so into the same
 * chunks, as the file-aware chunks strategy does for the file on the disk.
 */
import type { Disk, Extent } from '../../container/disk.js';
import type { FileExtent, FileSystem, FsNode } from '../../fs/types.js';
import { VmdnError } from '../../errors.js';

export class FileContentDisk implements Disk {
  readonly format = 'file';
  readonly virtualSize: number;
  readonly clusterSize: number;
  private inline?: Uint8Array;

  private constructor(
    private readonly fs: FileSystem,
    private readonly node: FsNode,
    private readonly dev: Disk,
    private readonly map: FileExtent[],
  ) {
    this.virtualSize = node.size;
    this.clusterSize = fs.info.blockSize;
  }

  /** `dev` is the disk the filesystem lives on (device offsets are relative to it). */
  static async open(fs: FileSystem, node: FsNode, dev: Disk): Promise<FileContentDisk> {
    const map = (await fs.fileExtents(node)).filter((e) => e.length > 0).sort((a, b) => a.fileOffset - b.fileOffset);
    for (const e of map) {
      if (e.fileOffset + e.length > node.size || e.deviceOffset + e.length > dev.virtualSize) {
        throw new VmdnError('E_FORMAT', `inode ${node.ino}: extent past the file or the device`, { ino: node.ino });
      }
    }
    const d = new FileContentDisk(fs, node, dev, map);
    // data stored inside the inode (inline_data) has no extents: read it whole, it is small
    if (map.length === 0 && node.size > 0) {
      const parts: Uint8Array[] = [];
      for await (const b of fs.readFile(node)) parts.push(b);
      d.inline = Buffer.concat(parts).subarray(0, node.size);
      if (d.inline.length !== node.size) throw new VmdnError('E_FORMAT', `inode ${node.ino}: read ${d.inline.length} of ${node.size} bytes`, { ino: node.ino });
    }
    return d;
  }

  async *extents(): AsyncIterable<Extent> {
    if (this.inline) {
      yield { offset: 0, length: this.inline.length, kind: 'data' };
      return;
    }
    let last: { offset: number; length: number } | undefined;
    for (const e of this.map) {
      if (last && last.offset + last.length === e.fileOffset) last.length += e.length;
      else {
        if (last) yield { ...last, kind: 'data' };
        last = { offset: e.fileOffset, length: e.length };
      }
    }
    if (last) yield { ...last, kind: 'data' };
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (this.inline) return this.inline.subarray(offset, offset + length);
    const out = new Uint8Array(length);
    const end = offset + length;
    for (const e of this.map) {
      const s = Math.max(offset, e.fileOffset);
      const t = Math.min(end, e.fileOffset + e.length);
      if (t <= s) continue;
      out.set(await this.dev.read(e.deviceOffset + (s - e.fileOffset), t - s), s - offset);
    }
    return out;
  }

  async close(): Promise<void> {}
}
