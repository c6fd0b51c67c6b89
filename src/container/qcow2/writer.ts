/**
 * Streaming qcow2 (v3) writer. Writes arrive in ascending guest order, so the
 * data area is appended sequentially from host cluster 1 on and all metadata
 * (L2 tables, L1, refcounts, header) is written once at finish(). All-zero
 * guest clusters stay unallocated. Compressed clusters are packed back to back
 * at byte granularity (as qemu does); they may run across a host cluster
 * boundary, and each host cluster they touch gets one reference per
 * compressed cluster. Uncompressed clusters start at the next host cluster.
 */
import type { DiskWriter } from '../disk.js';
import { VmdnError } from '../../errors.js';
import { WriterLife } from '../writer-life.js';
import { MAX_CLUSTER_BITS, MAX_VIRTUAL_SIZE, MIN_CLUSTER_BITS, encodeCompressedEntry } from './layout.js';
import { type CompressionKind, type ClusterCompressor, makeClusterCompressor } from './compress.js';
import { MAX_REFCOUNT, buildHeader, buildL1, buildRefcounts, planMetadata, type MetaInput } from './meta.js';
import { Batcher, TempFile, asBuffer, checkVirtualSize, checkWrite, isZero } from '../writer-file.js';

export interface Qcow2WriterOptions {
  /** log2 of the cluster size, 9..21; default 16 (64 KiB), qemu's default. */
  clusterBits?: number;
  compress?: CompressionKind | false;
}

const BATCH = 8 << 20;
/** Metadata is written in pieces of about this size. */
const META_CHUNK = 8 << 20;
const SECTOR = 512;
/** qemu refuses images whose L1 table exceeds 32 MiB (QCOW_MAX_L1_SIZE). */
const MAX_L1_BYTES = 32 << 20;
/** COPIED flag as the high 32-bit half of an entry, to build L2 entries without BigInt. */
const COPIED_HI = 0x80000000;

/**
 * Create a qcow2 writer for a disk of `virtualSize` bytes. Writes must stay
 * within virtualSize; the image header records it rounded up to 512 bytes.
 */
export async function createQcow2Writer(outPath: string, virtualSize: number, opts: Qcow2WriterOptions = {}): Promise<DiskWriter> {
  const clusterBits = opts.clusterBits ?? 16;
  if (!Number.isInteger(clusterBits) || clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new VmdnError('E_USAGE', `clusterBits must be ${MIN_CLUSTER_BITS}..${MAX_CLUSTER_BITS}, got ${clusterBits}`);
  }
  const compress = opts.compress ?? false;
  if (compress !== false && compress !== 'zstd' && compress !== 'deflate') {
    throw new VmdnError('E_USAGE', `unknown compression ${String(compress)}`);
  }
  checkVirtualSize(virtualSize, MAX_VIRTUAL_SIZE);
  const l1Bytes = Math.ceil(virtualSize / 2 ** clusterBits / 2 ** (clusterBits - 3)) * 8;
  if (l1Bytes > MAX_L1_BYTES) {
    throw new VmdnError('E_USAGE', `virtual size ${virtualSize} needs a ${l1Bytes}-byte L1 table (qemu's limit is ${MAX_L1_BYTES}); use larger clusters`);
  }
  return new Qcow2Writer(await TempFile.create(outPath), virtualSize, clusterBits, compress);
}

class Qcow2Writer implements DiskWriter {
  private readonly cs: number;
  private readonly l2Entries: number;
  private readonly l1Size: number;
  private readonly headerSize: number;
  private readonly compressor: ClusterCompressor | null;
  /** L2 tables in on-disk (big-endian) form, created when a slot gets its first cluster. */
  private readonly l2 = new Map<number, Buffer>();
  /** Refcount per host cluster of the header + data area; grown by doubling. */
  private refs = new Uint16Array(1024);
  private readonly out: Batcher;
  /** The guest cluster being assembled from partial writes, or -1. */
  private pendIndex = -1;
  private readonly pend: Buffer;
  private writtenEnd = 0;
  private readonly life: WriterLife;

  constructor(
    private readonly file: TempFile,
    private readonly virtualSize: number,
    private readonly clusterBits: number,
    private readonly compress: CompressionKind | false,
  ) {
    this.life = new WriterLife(file);
    this.cs = 2 ** clusterBits;
    this.l2Entries = this.cs / 8;
    // qemu drops a partial last sector (total_sectors = size / 512), so the header
    // carries the size rounded up to 512, as qemu-img convert does; the tail reads as zeros.
    this.headerSize = Math.ceil(virtualSize / SECTOR) * SECTOR;
    this.l1Size = Math.ceil(Math.ceil(this.headerSize / this.cs) / this.l2Entries);
    this.compressor = compress ? makeClusterCompressor(compress, this.cs) : null;
    this.pend = Buffer.alloc(this.cs);
    this.refs[0] = 1; // header cluster
    // Data starts at host cluster 1; the batch must hold a cluster plus alignment padding.
    this.out = new Batcher(Math.max(BATCH, 4 * this.cs), this.cs, (buf, len, start) => file.writeAt(buf, 0, len, start));
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    // Writes share the pending-cluster buffer and the batch: they must not interleave.
    this.life.checkWritable();
    this.writtenEnd = checkWrite(offset, data.length, this.writtenEnd, this.virtualSize);
    await this.life.writing(async () => {
      await this.writeClusters(offset, asBuffer(data));
    });
  }

  private async writeClusters(offset: number, src: Buffer): Promise<void> {
    const cs = this.cs;
    let pos = offset;
    let i = 0;
    while (i < src.length) {
      const ci = Math.floor(pos / cs);
      const inOff = pos - ci * cs;
      const n = Math.min(cs - inOff, src.length - i);
      if (this.pendIndex >= 0 && this.pendIndex !== ci) await this.emitPending();
      if (n === cs) {
        // Whole aligned cluster: no need to assemble it first.
        await this.emit(ci, src.subarray(i, i + cs));
      } else {
        this.pendIndex = ci;
        src.copy(this.pend, inOff, i, i + n);
      }
      pos += n;
      i += n;
    }
  }

  private async emitPending(): Promise<void> {
    const ci = this.pendIndex;
    this.pendIndex = -1;
    await this.emit(ci, this.pend);
    this.pend.fill(0); // bytes the next partial writes skip must read as zeros
  }

  /** Store one complete guest cluster (`cluster.length === cs`). */
  private async emit(ci: number, cluster: Buffer): Promise<void> {
    if (isZero(cluster, 0, this.cs)) return; // unallocated reads as zeros
    if (this.compressor) {
      const c = this.compressor(cluster);
      if (c) return this.appendCompressed(ci, c);
    }
    await this.appendRaw(ci, cluster);
  }

  private async appendRaw(ci: number, cluster: Buffer): Promise<void> {
    const out = this.out;
    const cs = this.cs;
    const pad = (cs - (out.end % cs)) % cs;
    await out.reserve(pad + cs);
    if (out.len === 0) {
      out.start += pad; // nothing buffered: skip the padding as a hole instead of writing zeros
    } else {
      out.buf.fill(0, out.len, out.len + pad);
      out.len += pad;
    }
    const host = out.end;
    cluster.copy(out.buf, out.len, 0, cs);
    out.len += cs;
    this.addRef(host / cs);
    // Standard entry: host offset | COPIED (the cluster's refcount is 1).
    const l2 = this.l2Table(ci);
    const at = (ci % this.l2Entries) * 8;
    l2.writeUInt32BE((COPIED_HI | Math.floor(host / 2 ** 32)) >>> 0, at);
    l2.writeUInt32BE(host >>> 0, at + 4);
  }

  private async appendCompressed(ci: number, c: Uint8Array): Promise<void> {
    const out = this.out;
    const cs = this.cs;
    // A host cluster shared by very many tiny compressed clusters must not overflow its 16-bit refcount.
    const shared = out.end % cs !== 0 && this.refs[Math.floor(out.end / cs)] >= MAX_REFCOUNT;
    const pad = shared ? cs - (out.end % cs) : 0;
    await out.reserve(pad + c.length);
    if (out.len === 0) {
      out.start += pad;
    } else {
      out.buf.fill(0, out.len, out.len + pad);
      out.len += pad;
    }
    const host = out.end;
    out.buf.set(c, out.len);
    out.len += c.length;
    // qemu counts a compressed cluster as covering whole 512-byte sectors from its start.
    const sectorEnd = Math.ceil((host + c.length) / SECTOR) * SECTOR;
    for (let h = Math.floor(host / cs); h <= Math.floor((sectorEnd - 1) / cs); h++) this.addRef(h);
    this.l2Table(ci).writeBigUInt64BE(encodeCompressedEntry(host, c.length, this.clusterBits), (ci % this.l2Entries) * 8);
  }

  private addRef(h: number): void {
    if (h >= this.refs.length) {
      const grown = new Uint16Array(Math.max(this.refs.length * 2, h + 1));
      grown.set(this.refs);
      this.refs = grown;
    }
    this.refs[h]++;
  }

  private l2Table(ci: number): Buffer {
    const slot = Math.floor(ci / this.l2Entries);
    let t = this.l2.get(slot);
    if (!t) {
      t = Buffer.alloc(this.cs);
      this.l2.set(slot, t);
    }
    return t;
  }

  async finish(): Promise<void> {
    await this.life.finish(async () => {
      if (this.pendIndex >= 0) await this.emitPending();
      await this.out.drain();
      await this.writeMetadata();
    });
  }

  private async writeMetadata(): Promise<void> {
    const cs = this.cs;
    const slots = [...this.l2.keys()].sort((a, b) => a - b);
    const m: MetaInput = {
      clusterSize: cs,
      // The tail of the last data cluster may be unwritten; it is a hole that reads as zeros.
      dataClusters: Math.ceil(this.out.end / cs),
      dataRefs: this.refs,
      l1Size: this.l1Size,
      l2Slots: slots,
    };
    if (this.refs.length < m.dataClusters) throw new VmdnError('E_INTERNAL', 'refcount array shorter than data area');
    const plan = planMetadata(m);
    // L2 tables are contiguous from the first metadata cluster: write them in large pieces.
    const perChunk = Math.max(1, Math.floor(META_CHUNK / cs));
    for (let i = 0; i < slots.length; i += perChunk) {
      const chunk = Buffer.concat(slots.slice(i, i + perChunk).map((s) => this.l2.get(s)!));
      await this.file.writeAt(chunk, 0, chunk.length, plan.l2Offsets[i]);
    }
    const l1 = buildL1(m, plan);
    await this.file.writeAt(l1, 0, l1.length, plan.l1Offset);
    const rc = buildRefcounts(m, plan);
    await this.file.writeAt(rc, 0, rc.length, plan.refblockOffset);
    // Header last: until it is written, the temp file is not a valid image.
    const header = buildHeader(this.headerSize, this.clusterBits, this.l1Size, plan, this.compress);
    await this.file.writeAt(header, 0, header.length, 0);
  }

  async abort(): Promise<void> {
    await this.life.abort(() => this.out.settle());
  }
}
