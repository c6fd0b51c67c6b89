/**
 * monolithicSparse writer: one file, grains uncompressed. The metadata area
 * (header, descriptor, grain directory, every grain table) has a size known
 * from the capacity, so grains are appended after it as writes arrive, and
 * the tables and header are written once at finish(), header last. Tables
 * without a grain stay holes in the file (they read as all-unallocated).
 */
import type { DiskWriter } from '../disk.js';
import { VmdnError } from '../../errors.js';
import { WriterLife } from '../writer-life.js';
import { Batcher, TempFile, asBuffer } from '../writer-file.js';
import { SECTOR } from './layout.js';
import { buildDescriptor } from './descriptor.js';
import { cidFor } from './stream-writer.js';
import {
  GrainAssembler, GRAIN_SECTORS, GTES, DESCRIPTOR_OFFSET, DESCRIPTOR_SECTORS, MAX_FILE_SECTOR, checkVmdkSize,
  buildHeader, descriptorSectors, tableBytes, extentName,
} from './grains.js';

const BATCH = 8 << 20;

export async function createMonolithicSparseWriter(outPath: string, virtualSize: number, outName: string): Promise<DiskWriter> {
  checkVmdkSize(virtualSize);
  return new MonolithicSparseWriter(await TempFile.create(outPath), virtualSize, extentName(outName));
}

class MonolithicSparseWriter implements DiskWriter {
  private readonly capacity: number;
  private readonly gdEntries: number;
  private readonly gdOffset: number;
  private readonly gtOffset: number;
  private readonly overHead: number;
  /** Grain tables with at least one grain, by directory index. */
  private readonly gts = new Map<number, Uint32Array>();
  private readonly grains: GrainAssembler;
  private readonly out: Batcher;
  private readonly life: WriterLife;

  constructor(
    private readonly file: TempFile,
    virtualSize: number,
    private readonly name: string,
  ) {
    this.life = new WriterLife(file);
    this.capacity = Math.ceil(virtualSize / SECTOR);
    this.gdEntries = Math.ceil(this.capacity / (GTES * GRAIN_SECTORS));
    const gdSectors = Math.ceil((this.gdEntries * 4) / SECTOR);
    this.gdOffset = DESCRIPTOR_OFFSET + DESCRIPTOR_SECTORS;
    this.gtOffset = this.gdOffset + gdSectors;
    // Grains start on a grain boundary after the last table (qemu and VMware do the same).
    this.overHead = Math.ceil((this.gtOffset + this.gdEntries * tableSectors()) / GRAIN_SECTORS) * GRAIN_SECTORS;
    this.grains = new GrainAssembler(virtualSize, (g, grain) => this.emit(g, grain));
    this.out = new Batcher(BATCH, this.overHead * SECTOR, (buf, len, start) => file.writeAt(buf, 0, len, start));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.life.checkWritable();
    await this.life.writing(async () => {
      await this.grains.write(offset, asBuffer(data));
    });
  }

  private async emit(g: number, grain: Buffer): Promise<void> {
    const out = this.out;
    await out.reserve(grain.length);
    const sector = out.end / SECTOR;
    if (sector + GRAIN_SECTORS > MAX_FILE_SECTOR) throw new VmdnError('E_USAGE', 'monolithicSparse output exceeds the 2 TiB a VMDK extent can address');
    grain.copy(out.buf, out.len);
    out.len += grain.length;
    const t = Math.floor(g / GTES);
    let gt = this.gts.get(t);
    if (!gt) this.gts.set(t, (gt = new Uint32Array(GTES)));
    gt[g % GTES] = sector;
  }

  async finish(): Promise<void> {
    await this.life.finish(async () => {
      await this.grains.flush();
      await this.out.drain();
      await this.writeMetadata();
    });
  }

  private async writeMetadata(): Promise<void> {
    const f = this.file;
    for (const [t, gt] of this.gts) {
      const b = tableBytes(gt);
      await f.writeAt(b, 0, b.length, (this.gtOffset + t * tableSectors()) * SECTOR);
    }
    const gd = new Uint32Array(this.gdEntries);
    for (let t = 0; t < gd.length; t++) gd[t] = this.gtOffset + t * tableSectors();
    const gdBytes = tableBytes(gd);
    await f.writeAt(gdBytes, 0, gdBytes.length, this.gdOffset * SECTOR);
    const desc = descriptorSectors(buildDescriptor('monolithicSparse', this.capacity, this.name, cidFor(this.capacity)));
    await f.writeAt(desc, 0, desc.length, DESCRIPTOR_OFFSET * SECTOR);
    // Readers (qemu included) expect the file to reach at least the end of the metadata area.
    const end = Math.max(this.out.end, this.overHead * SECTOR);
    await f.fh.truncate(end);
    // Header last: until it is written, the temp file is not a valid image.
    const header = buildHeader({ capacity: this.capacity, compressed: false, gdOffset: this.gdOffset, overHead: this.overHead });
    await f.writeAt(header, 0, header.length, 0);
  }

  async abort(): Promise<void> {
    await this.life.abort(() => this.out.settle());
  }
}

function tableSectors(): number {
  return Math.ceil((GTES * 4) / SECTOR);
}
