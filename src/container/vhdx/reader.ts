/**
 * VHDX reader: fixed, dynamic and differencing disks. Open: file identifier,
 * current header, log replay (in memory) if the header names a log, region
 * table, metadata, BAT, parent. Reads go by block state: FULLY_PRESENT from
 * the file; ZERO and UNMAPPED read zeros; NOT_PRESENT and UNDEFINED read the
 * parent's data (zeros without a parent); PARTIALLY_PRESENT reads each sector
 * from the file or the parent as its chunk's sector bitmap says (bit set: this
 * file; least significant bit first, as libvhdi documents).
 */
import type { Disk, Extent } from '../disk.js';
import { openImageFile } from '../image-file.js';
import { ExtentMerger, checkRead } from '../io.js';
import { ParentView, sectorRuns } from '../differencing.js';
import { FileView, replayLog } from './log.js';
import { parseHeaders, parseRegions, parseMetadata, hasLog, fail, type VhdxMeta } from './header.js';
import { parseBat, type Bat } from './bat.js';
import { parseLocator, openParent } from './parent.js';
import { FILE_ID_SIGNATURE, REGION_TABLE_OFFSETS, REGION_TABLE_SIZE, PAYLOAD, SECTOR_BITMAP_SIZE, guidText } from './layout.js';

export interface VhdxOpenOptions {
  /** Real paths of the children above this disk (loop detection and depth), nearest last. */
  readonly chain?: readonly string[];
  readonly allowBacking?: readonly string[];
}

export class VhdxDisk implements Disk {
  readonly format = 'vhdx';
  readonly virtualSize: number;
  readonly clusterSize: number;
  /** Reads through to the parent of a differencing disk. */
  private readonly up: ParentView | null;
  private lastBitmap: { chunk: number; bits: Uint8Array } | null = null;

  private constructor(
    private readonly view: FileView,
    readonly meta: VhdxMeta,
    readonly bat: Bat,
    readonly dataWriteGuidText: string,
    /** Log entries replayed in memory at open (0: the image was closed cleanly). */
    readonly replayed: number,
    readonly parent: VhdxDisk | null,
  ) {
    this.virtualSize = meta.virtualSize;
    this.up = parent ? new ParentView(parent) : null;
    this.clusterSize = meta.blockSize;
  }

  get path(): string {
    return this.view.path;
  }

  static async open(path: string, opts: VhdxOpenOptions = {}): Promise<VhdxDisk> {
    const { fh, size } = await openImageFile(path);
    let parent: VhdxDisk | null = null;
    try {
      const view = new FileView(fh, path, size);
      if (size < REGION_TABLE_OFFSETS[1] + REGION_TABLE_SIZE) fail('E_TRUNCATED', path, `file too small for a VHDX header section (${size} bytes)`);
      if ((await view.read(0, 8)).toString('latin1') !== FILE_ID_SIGNATURE) fail('E_FORMAT', path, 'not a VHDX image (no "vhdxfile" signature)');
      const header = await parseHeaders(view);
      const log = { offset: header.logOffset, length: header.logLength };
      const replayed = hasLog(header) ? await replayLog(view, log.offset, log.length, header.logGuid) : 0;
      // The log may have rewritten the headers themselves: read them again through it.
      const cur = replayed > 0 ? await parseHeaders(view) : header;
      const regions = await parseRegions(view, log);
      const meta = await parseMetadata(view, regions.metadata);
      const bat = await parseBat(view, meta, regions.bat, [regions.bat, regions.metadata, ...(log.length ? [log] : [])]);
      if (meta.parentLocator) {
        const loc = parseLocator(meta.parentLocator, path);
        parent = await openParent(path, loc, opts.chain ?? [], opts.allowBacking, (target, chain) => VhdxDisk.open(target, { chain, allowBacking: opts.allowBacking }));
      }
      return new VhdxDisk(view, meta, bat, guidText(cur.dataWriteGuid), replayed, parent);
    } catch (err) {
      await parent?.close().catch(() => {});
      await fh.close();
      throw err;
    }
  }

  /** Where block `b`'s data comes from: this file, zeros, the parent, or per sector (partial). */
  private source(b: number): 'file' | 'zero' | 'parent' | 'partial' {
    switch (this.bat.state[b]) {
      case PAYLOAD.FULLY_PRESENT: return 'file';
      case PAYLOAD.PARTIALLY_PRESENT: return 'partial';
      case PAYLOAD.ZERO: case PAYLOAD.UNMAPPED: case PAYLOAD.UNMAPPED_V095: return 'zero';
      default: return this.parent ? 'parent' : 'zero';
    }
  }

  async *extents(signal?: AbortSignal): AsyncIterable<Extent> {
    const bs = this.meta.blockSize;
    const m = new ExtentMerger();
    const add = (offset: number, length: number, kind: Extent['kind']): void => m.add(offset, length, kind);
    for (let b = 0; b < this.bat.blocks; b++) {
      signal?.throwIfAborted();
      const start = b * bs;
      const end = Math.min(this.virtualSize, start + bs);
      const src = this.source(b);
      if (src === 'file' || src === 'partial') add(start, end - start, 'data');
      // A zero block of a differencing disk hides the parent's data: say so; elsewhere it is a hole.
      else if (src === 'zero' && this.parent && this.bat.state[b] !== PAYLOAD.NOT_PRESENT) add(start, end - start, 'zero');
      else if (src === 'parent') for (const e of await this.up!.extentsIn(start, end, signal)) add(e.offset, e.length, e.kind);
      yield* m.done.splice(0);
    }
    m.finish();
    yield* m.done;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRead(offset, length, this.virtualSize, this.path);
    const out = Buffer.alloc(length);
    const bs = this.meta.blockSize;
    let pos = offset;
    while (pos < offset + length) {
      const b = Math.floor(pos / bs);
      const inBlock = pos - b * bs;
      const n = Math.min(bs - inBlock, offset + length - pos);
      const src = this.source(b);
      if (src === 'file') out.set(await this.view.read(this.bat.offset[b] + inBlock, n), pos - offset);
      else if (src === 'parent') await this.up!.readInto(out, pos - offset, pos, n);
      else if (src === 'partial') await this.readPartial(out, pos - offset, b, inBlock, n);
      pos += n;
    }
    return out;
  }

  /** Sector runs of a partially present block: bitmap bit set -> this file, clear -> the parent. */
  private async readPartial(out: Buffer, at: number, b: number, inBlock: number, n: number): Promise<void> {
    const ss = this.meta.logicalSector;
    const chunk = Math.floor(b / this.bat.ratio);
    if (this.lastBitmap?.chunk !== chunk) {
      this.lastBitmap = { chunk, bits: await this.view.read(this.bat.bitmap[chunk], SECTOR_BITMAP_SIZE) };
    }
    const bits = this.lastBitmap.bits;
    const first = (b - chunk * this.bat.ratio) * (this.meta.blockSize / ss);
    const mine = (s: number): boolean => (bits[(first + s) >> 3] & (1 << ((first + s) & 7))) !== 0;
    const base = b * this.meta.blockSize;
    await sectorRuns(inBlock, n, ss, mine, async (p, q, own) => {
      if (own) out.set(await this.view.read(this.bat.offset[b] + p, q - p), at + p - inBlock);
      else await this.up!.readInto(out, at + p - inBlock, base + p, q - p);
    });
  }

  async close(): Promise<void> {
    try {
      await this.parent?.close();
    } finally {
      await this.view.fh.close();
    }
  }
}
