/**
 * Writer for formats that map fixed-size guest blocks to blocks appended to
 * the file (dynamic VHD, dynamic VDI): writes arrive in ascending order, so
 * each block is assembled in memory, appended when complete (all-zero blocks
 * are left unallocated), and the tables that precede the data are written
 * once, at finish(), by the format's `finish` callback.
 */
import type { DiskWriter } from './disk.js';
import { WriterLife } from './writer-life.js';
import { TempFile, asBuffer, checkWrite, isZero, writeSkippingZeroBlocks } from './writer-file.js';

export interface BlockFormat {
  readonly blockSize: number;
  /** File offset of the first block. */
  readonly dataStart: number;
  /** Written before each block's data (VHD's sector bitmap); its length counts in the block's file span. */
  readonly prefix: Uint8Array;
  /** Headers and tables: `blocks[i]` is the file offset of guest block i (prefix included), -1 if unallocated; `end` the end of data. */
  finish(file: TempFile, blocks: Float64Array, end: number): Promise<void>;
}

export async function createBlockWriter(outPath: string, virtualSize: number, format: BlockFormat): Promise<DiskWriter> {
  return new BlockWriter(await TempFile.create(outPath), virtualSize, format);
}

class BlockWriter implements DiskWriter {
  private readonly blocks: Float64Array;
  private readonly pend: Buffer;
  private pendIndex = -1;
  private end: number;
  private writtenEnd = 0;
  private readonly life: WriterLife;

  constructor(
    private readonly file: TempFile,
    private readonly virtualSize: number,
    private readonly f: BlockFormat,
  ) {
    this.life = new WriterLife(file);
    this.blocks = new Float64Array(Math.ceil(virtualSize / f.blockSize)).fill(-1);
    this.pend = Buffer.alloc(f.prefix.length + f.blockSize);
    this.pend.set(f.prefix, 0);
    this.end = f.dataStart;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.life.checkWritable();
    this.writtenEnd = checkWrite(offset, data.length, this.writtenEnd, this.virtualSize);
    await this.life.writing(async () => {
      const src = asBuffer(data);
      const bs = this.f.blockSize;
      let pos = offset;
      let i = 0;
      while (i < src.length) {
        const b = Math.floor(pos / bs);
        const inBlock = pos - b * bs;
        const n = Math.min(bs - inBlock, src.length - i);
        if (this.pendIndex >= 0 && this.pendIndex !== b) await this.emit();
        this.pendIndex = b;
        src.copy(this.pend, this.f.prefix.length + inBlock, i, i + n);
        pos += n;
        i += n;
      }
    });
  }

  /** Append the pending block unless it is all zeros; then clear it for the next. */
  private async emit(): Promise<void> {
    const b = this.pendIndex;
    this.pendIndex = -1;
    const p = this.f.prefix.length;
    if (isZero(this.pend, p, this.pend.length)) return;
    this.blocks[b] = this.end;
    // Zero runs inside the block stay holes of the (fresh) temp file.
    await writeSkippingZeroBlocks((buf, off, n, at) => this.file.writeAt(buf, off, n, at), this.pend, this.pend.length, this.end);
    this.end += this.pend.length;
    this.pend.fill(0, p);
  }

  async finish(): Promise<void> {
    await this.life.finish(async () => {
      if (this.pendIndex >= 0) await this.emit();
      await this.f.finish(this.file, this.blocks, this.end);
    });
  }

  async abort(): Promise<void> {
    await this.life.abort();
  }
}
