/**
 * streamOptimized writer: the one VMDK subformat written front to back
 * without seeking (what OVAs carry), so it can go straight to a pipe.
 * Layout, as VMware writes it: header (grain directory "at end") and
 * descriptor in the first grain; then per grain a marker {lba, size} and its
 * zlib data, sector-aligned; after the grains a grain table covers, a GT
 * marker and the table; at the end a GD marker and the directory, a footer
 * marker and a copy of the header that points at the directory, and an
 * end-of-stream marker. Grain tables with no grain are not written (their
 * directory entry is 0, which readers take as unallocated).
 */
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import type { DiskWriter } from '../disk.js';
import { VmdnError, asVmdnError } from '../../errors.js';
import { WriterLife } from '../writer-life.js';
import { asBuffer } from '../writer-file.js';
import { SECTOR, marker, MARKER, GRAIN_MARKER_HEAD } from './layout.js';
import { buildDescriptor } from './descriptor.js';
import {
  GrainAssembler, GRAIN_SECTORS, GTES, MAX_FILE_SECTOR, checkVmdkSize, buildHeader, descriptorSectors, tableBytes, extentName,
} from './grains.js';
import type { SeqSink } from './sink.js';

const deflate = promisify(zlib.deflate);

/**
 * Grains compressed at once on libuv's thread pool, written in order as each
 * is done. With deflateSync on the main thread, compression was all of a
 * streamOptimized export's time, on one core (~15 s for the corpus image);
 * the same zlib at the same level, so the same bytes.
 */
const DEFLATE_AHEAD = 8;

/** The first grain holds header and descriptor, as VMware lays it out. */
const OVERHEAD = GRAIN_SECTORS;

/** A deterministic content ID: the same disk exports to the same bytes (file or pipe). */
export const cidFor = (capacity: number): number => (Math.imul(capacity % 2 ** 32, 0x9e3779b1) >>> 0) || 1;

export async function createStreamOptimizedWriter(sink: SeqSink, virtualSize: number, outName: string): Promise<DiskWriter> {
  try {
    checkVmdkSize(virtualSize);
    const w = new StreamOptimizedWriter(sink, virtualSize);
    await w.start(extentName(outName));
    return w;
  } catch (err) {
    await sink.discard().catch(() => undefined);
    throw asVmdnError(err);
  }
}

class StreamOptimizedWriter implements DiskWriter {
  private readonly capacity: number;
  private readonly gd: Uint32Array;
  private readonly grains: GrainAssembler;
  private gtIndex = -1;
  private readonly gt = new Uint32Array(GTES);
  private gtUsed = false;
  private readonly life: WriterLife;
  /** Grains being compressed, in order. */
  private readonly deflating: Array<{ g: number; z: Promise<Buffer> }> = [];

  constructor(
    private readonly sink: SeqSink,
    virtualSize: number,
  ) {
    this.life = new WriterLife(sink);
    this.capacity = Math.ceil(virtualSize / SECTOR);
    this.gd = new Uint32Array(Math.ceil(this.capacity / (GTES * GRAIN_SECTORS)));
    this.grains = new GrainAssembler(virtualSize, (g, grain) => this.emit(g, grain));
  }

  async start(name: string): Promise<void> {
    await this.sink.write(buildHeader({ capacity: this.capacity, compressed: true, gdOffset: 'end', overHead: OVERHEAD }));
    const desc = descriptorSectors(buildDescriptor('streamOptimized', this.capacity, name, cidFor(this.capacity)));
    await this.sink.write(desc);
    await this.sink.write(Buffer.alloc(OVERHEAD * SECTOR - this.sink.pos));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.life.checkWritable();
    await this.life.writing(async () => {
      await this.grains.write(offset, asBuffer(data));
    });
  }

  /** The sector the next write lands on (the sink is always sector-aligned between records). */
  private sector(): number {
    const s = this.sink.pos / SECTOR;
    if (s > MAX_FILE_SECTOR) throw new VmdnError('E_USAGE', 'streamOptimized output exceeds the 2 TiB a VMDK extent can address');
    return s;
  }

  private async emit(g: number, grain: Buffer): Promise<void> {
    // a copy: the grain is the caller's buffer or the assembler's, both used again once write() returns
    const z = deflate(Buffer.from(grain));
    z.catch(() => undefined); // surfaced when its turn to be written comes
    this.deflating.push({ g, z });
    if (this.deflating.length >= DEFLATE_AHEAD) await this.writeNext();
  }

  /** Write the oldest grain being compressed (its table's turn comes first when it starts a new one). */
  private async writeNext(): Promise<void> {
    const { g, z: compressed } = this.deflating.shift()!;
    const t = Math.floor(g / GTES);
    if (t !== this.gtIndex) await this.flushTable(t);
    const z = await compressed;
    const rec = Buffer.alloc(Math.ceil((GRAIN_MARKER_HEAD + z.length) / SECTOR) * SECTOR);
    rec.writeBigUInt64LE(BigInt(g * GRAIN_SECTORS), 0);
    rec.writeUInt32LE(z.length, 8);
    z.copy(rec, GRAIN_MARKER_HEAD);
    this.gt[g % GTES] = this.sector();
    this.gtUsed = true;
    await this.sink.write(rec);
  }

  /** Write the grain table being filled (if any grain went into it), then start table `next`. */
  private async flushTable(next: number): Promise<void> {
    if (this.gtUsed) {
      const bytes = tableBytes(this.gt);
      await this.sink.write(metaMarker(bytes.length / SECTOR, MARKER.GT));
      this.gd[this.gtIndex] = this.sector();
      await this.sink.write(bytes);
    }
    this.gt.fill(0);
    this.gtUsed = false;
    this.gtIndex = next;
  }

  async finish(): Promise<void> {
    await this.life.finish(async () => {
      await this.grains.flush();
      while (this.deflating.length > 0) await this.writeNext();
      await this.flushTable(-1);
      const gd = tableBytes(this.gd);
      await this.sink.write(metaMarker(gd.length / SECTOR, MARKER.GD));
      const gdOffset = this.sector();
      await this.sink.write(gd);
      await this.sink.write(metaMarker(1, MARKER.FOOTER));
      await this.sink.write(buildHeader({ capacity: this.capacity, compressed: true, gdOffset, overHead: OVERHEAD }));
      await this.sink.write(metaMarker(0, MARKER.EOS));
    });
  }

  async abort(): Promise<void> {
    await this.life.abort();
  }
}

/** A metadata marker sector: {numSectors of what follows, size 0, type}. */
function metaMarker(sectors: number, type: number): Buffer {
  return Buffer.from(marker.write({ value: BigInt(sectors), size: 0, type }, new Uint8Array(SECTOR)));
}
