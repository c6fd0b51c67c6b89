/**
 * VHD reader: fixed, dynamic and differencing disks. A differencing disk's
 * parent is opened under the same rules as a qcow2 backing file (beside the
 * child unless trusted with --allow-backing, no loops, bounded depth) and
 * must carry the unique id the child names. Sectors a differencing block's
 * bitmap leaves clear, and unallocated blocks, read from the parent; a
 * dynamic disk's bitmap is not consulted (qemu does not either).
 */
import type fs from 'node:fs/promises';
import type { Disk, Extent } from '../disk.js';
import { VmdnError } from '../../errors.js';
import { openImageFile } from '../image-file.js';
import { ExtentMerger, checkRead } from '../io.js';
import { ParentView, sectorRuns } from '../differencing.js';
import { dataRanges } from '../sparse.js';
import { readExact } from '../qcow2/tables.js';
import { checkBackingFile } from '../qcow2/backing.js';
import { FOOTER_SIZE, DYN_HEADER_SIZE, SECTOR } from './layout.js';
import { parseFooter, parseDynHeader, parseBat, relativeLocator, locatorName, type VhdFooterInfo, type VhdDynInfo } from './header.js';

export interface VhdOpenOptions {
  /** Real paths of the children above this disk (loop detection and depth), nearest last. */
  readonly chain?: readonly string[];
  readonly allowBacking?: readonly string[];
}

interface Dynamic {
  readonly dyn: VhdDynInfo;
  /** Block index -> file offset of its bitmap, -1 if not allocated. */
  readonly bat: Float64Array;
}

export class VhdDisk implements Disk {
  readonly format = 'vhd';
  readonly virtualSize: number;
  readonly clusterSize: number;
  /** Reads through to the parent of a differencing disk. */
  private readonly up: ParentView | null;
  private lastBitmap: { block: number; bits: Uint8Array } | null = null;

  private constructor(
    private readonly fh: fs.FileHandle,
    readonly path: string,
    readonly footer: VhdFooterInfo,
    private readonly table: Dynamic | null,
    /** The parent of a differencing disk; owned, closed with this one. */
    readonly parent: Disk | null,
  ) {
    this.virtualSize = footer.virtualSize;
    this.up = parent ? new ParentView(parent) : null;
    this.clusterSize = table ? table.dyn.blockSize : 4096;
  }

  static async open(path: string, opts: VhdOpenOptions = {}): Promise<VhdDisk> {
    const { fh, size } = await openImageFile(path);
    let parent: Disk | null = null;
    try {
      const head = size >= FOOTER_SIZE ? await readExact(fh, path, 0, FOOTER_SIZE) : Buffer.alloc(0);
      const tail = size >= FOOTER_SIZE ? await readExact(fh, path, size - FOOTER_SIZE, FOOTER_SIZE) : Buffer.alloc(0);
      const footer = parseFooter(head, tail, path, size);
      if (footer.diskType === 'fixed') return new VhdDisk(fh, path, footer, null, null);
      const hbuf = await readExact(fh, path, footer.dataOffset, DYN_HEADER_SIZE);
      const dyn = parseDynHeader(hbuf, footer, path, size);
      const bat = parseBat(await readExact(fh, path, dyn.tableOffset, dyn.entries * 4), footer, dyn, path, size);
      if (footer.diskType === 'differencing') parent = await openParent(fh, path, hbuf, dyn, size, opts);
      return new VhdDisk(fh, path, footer, { dyn, bat }, parent);
    } catch (err) {
      await parent?.close().catch(() => {});
      await fh.close();
      throw err;
    }
  }

  async *extents(signal?: AbortSignal): AsyncIterable<Extent> {
    if (!this.table) {
      // Fixed: the data area is a raw disk; holes of a sparse file stay holes.
      for (const [s, e] of dataRanges(this.fh.fd, this.virtualSize)) {
        signal?.throwIfAborted();
        const start = Math.floor(s / 4096) * 4096;
        yield { offset: start, length: Math.min(this.virtualSize, Math.ceil(e / 4096) * 4096) - start, kind: 'data' };
      }
      return;
    }
    const bs = this.table.dyn.blockSize;
    const m = new ExtentMerger();
    const add = (offset: number, length: number, kind: Extent['kind']): void => m.add(offset, length, kind);
    for (let b = 0; b < this.table.dyn.entries; b++) {
      signal?.throwIfAborted();
      const start = b * bs;
      const end = Math.min(this.virtualSize, start + bs);
      if (this.table.bat[b] >= 0) add(start, end - start, 'data');
      else if (this.parent) for (const e of await this.up!.extentsIn(start, end, signal)) add(e.offset, e.length, e.kind);
      yield* m.done.splice(0);
    }
    m.finish();
    yield* m.done;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRead(offset, length, this.virtualSize, this.path);
    if (!this.table) return readExact(this.fh, this.path, offset, length);
    const out = Buffer.alloc(length);
    const { dyn, bat } = this.table;
    let pos = offset;
    while (pos < offset + length) {
      const b = Math.floor(pos / dyn.blockSize);
      const inBlock = pos - b * dyn.blockSize;
      const n = Math.min(dyn.blockSize - inBlock, offset + length - pos);
      if (bat[b] >= 0) {
        const data = bat[b] + dyn.bitmapSize;
        if (this.parent) await this.readDifferencing(out, pos - offset, b, inBlock, n, data);
        else (await readExact(this.fh, this.path, data + inBlock, n)).copy(out, pos - offset);
      } else if (this.parent) {
        await this.up!.readInto(out, pos - offset, pos, n);
      }
      pos += n;
    }
    return out;
  }

  /** Sector runs of one block: bitmap bit set (most significant bit first) -> this file, clear -> the parent. */
  private async readDifferencing(out: Buffer, at: number, block: number, inBlock: number, n: number, data: number): Promise<void> {
    if (this.lastBitmap?.block !== block) {
      this.lastBitmap = { block, bits: await readExact(this.fh, this.path, this.table!.bat[block], this.table!.dyn.bitmapSize) };
    }
    const bits = this.lastBitmap.bits;
    const mine = (s: number): boolean => (bits[s >> 3] & (0x80 >> (s & 7))) !== 0;
    const base = block * this.table!.dyn.blockSize;
    await sectorRuns(inBlock, n, SECTOR, mine, async (p, q, own) => {
      if (own) (await readExact(this.fh, this.path, data + p, q - p)).copy(out, at + p - inBlock);
      else await this.up!.readInto(out, at + p - inBlock, base + p, q - p);
    });
  }

  async close(): Promise<void> {
    try {
      await this.parent?.close();
    } finally {
      await this.fh.close();
    }
  }
}

/** Open a differencing disk's parent: named beside it, checked like a qcow2 backing file, with the id the child names. */
async function openParent(fh: fs.FileHandle, path: string, hbuf: Uint8Array, dyn: VhdDynInfo, size: number, opts: VhdOpenOptions): Promise<Disk> {
  const loc = relativeLocator(hbuf, path, size);
  const name = loc ? locatorName(await readExact(fh, path, loc[0], loc[1]), path) : dyn.parentName;
  if (!name) throw new VmdnError('E_BACKING', `${path}: differencing VHD names no parent`, { path });
  const { target, file, below } = await checkBackingFile(path, name, opts.chain ?? [], opts.allowBacking);
  let parent: VhdDisk;
  try {
    parent = await VhdDisk.open(target, { chain: below, allowBacking: opts.allowBacking });
  } catch (err) {
    if (err instanceof VmdnError) {
      if (err.code === 'E_BACKING') throw err;
      throw new VmdnError(err.code, `parent of ${path}: ${err.message}`, { ...err.data, parent: path }, { cause: err });
    }
    throw new VmdnError('E_BACKING', `${path}: cannot open parent ${file}: ${(err as Error).message}`, { path, backing: file }, { cause: err });
  }
  if (Buffer.compare(Buffer.from(parent.footer.uniqueId), Buffer.from(dyn.parentUniqueId)) !== 0) {
    await parent.close();
    throw new VmdnError('E_BACKING', `${path}: parent ${file} is not the disk this one was made from (unique id differs)`, { path, backing: file });
  }
  return parent;
}
