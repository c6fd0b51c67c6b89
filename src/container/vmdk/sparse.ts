/**
 * One VMDK sparse extent (monolithicSparse, streamOptimized, or a piece of a
 * twoGbMaxExtentSparse disk) as a Disk: grain directory -> grain tables ->
 * grains, plain or deflate-compressed behind markers. The header and the
 * grain directory are checked at open; each grain table when first used, and
 * each entry against the metadata area and the file size when read, so a
 * table pointing into the header or past EOF is an error, never a wild read.
 */
import zlib from 'node:zlib';
import type fs from 'node:fs/promises';
import type { Disk, Extent } from '../disk.js';
import { VmdnError } from '../../errors.js';
import { SECTOR, GTE_ZERO, GRAIN_MARKER_HEAD, FOOTER_BYTES, sparseHeader } from './layout.js';
import { parseSparseHeader, parseFooter, checkRegion, tableSectors, type SparseHeader } from './header.js';
import { readExact } from './io.js';
import { ExtentMerger, checkRead } from '../io.js';

/** Grain tables kept decoded (2 KiB each); enough for 16 GiB of 64 KiB grains at a time. */
const GT_CACHE = 1024;
/** Bytes of inflated grains kept (128 grains of the usual 64 KiB; at least two grains of any size). */
const GRAIN_CACHE_BYTES = 8 << 20;
/** A deflate stream of one grain longer than this is corrupt (qemu allows twice the grain). */
const MAX_COMPRESSED_FACTOR = 2;

type Grain = { kind: 'hole' } | { kind: 'zero' } | { kind: 'data'; sector: number } | { kind: 'compressed'; sector: number };

export class SparseExtent implements Disk {
  readonly format = 'vmdk';
  readonly virtualSize: number;
  readonly clusterSize: number;
  private readonly gts = new Map<number, Uint32Array | null>();
  /** Recently inflated grains, oldest first: readers of a filesystem come back to a grain many times. */
  private readonly inflated = new Map<number, Promise<Buffer>>();

  private constructor(
    private readonly fh: fs.FileHandle,
    readonly path: string,
    private readonly fileSize: number,
    readonly header: SparseHeader,
    private readonly gd: Uint32Array,
  ) {
    this.virtualSize = header.capacity * SECTOR;
    this.clusterSize = header.grainSectors * SECTOR;
  }

  /** Parse the extent in `fh` (which the caller keeps owning). */
  static async open(fh: fs.FileHandle, path: string, fileSize: number): Promise<SparseExtent> {
    const head = await readExact(fh, path, 0, Math.min(fileSize, sparseHeader.size));
    let h = parseSparseHeader(head, path, fileSize);
    if (h.gdOffset === null) {
      const tail = fileSize >= FOOTER_BYTES ? await readExact(fh, path, fileSize - FOOTER_BYTES, FOOTER_BYTES) : new Uint8Array(0);
      const f = parseFooter(tail, path, fileSize);
      if (f.capacity !== h.capacity || f.grainSectors !== h.grainSectors || f.gtes !== h.gtes) {
        throw new VmdnError('E_FORMAT', `${path}: footer disagrees with the header on capacity or grain layout`, { path });
      }
      h = f;
    }
    const gdBytes = await readExact(fh, path, h.gdOffset! * SECTOR, h.gdEntries * 4);
    const gd = u32s(gdBytes);
    return new SparseExtent(fh, path, fileSize, h, gd);
  }

  private get fileSectors(): number {
    return Math.floor(this.fileSize / SECTOR);
  }

  private async table(i: number): Promise<Uint32Array | null> {
    const cached = this.gts.get(i);
    if (cached !== undefined) return cached;
    const at = this.gd[i];
    let t: Uint32Array | null = null;
    if (at !== 0) {
      checkRegion(this.path, `grain table ${i}`, at, tableSectors(this.header.gtes), this.fileSectors, this.header.descriptor);
      t = u32s(await readExact(this.fh, this.path, at * SECTOR, this.header.gtes * 4));
    }
    if (this.gts.size >= GT_CACHE) this.gts.clear();
    this.gts.set(i, t);
    return t;
  }

  /** Bytes of grain `g` inside the capacity (the last grain may be cut short). */
  private grainBytes(g: number): number {
    return Math.min(this.clusterSize, this.virtualSize - g * this.clusterSize);
  }

  private async grain(g: number): Promise<Grain> {
    const h = this.header;
    const t = await this.table(Math.floor(g / h.gtes));
    const e = t ? t[g % h.gtes] : 0;
    if (e === 0) return { kind: 'hole' };
    if (e === GTE_ZERO && h.zeroGrain) return { kind: 'zero' };
    const fail = (code: 'E_FORMAT' | 'E_TRUNCATED', why: string): never => {
      throw new VmdnError(code, `${this.path}: grain table entry for grain ${g} (sector ${e}) ${why}`, { path: this.path, grain: g, sector: e });
    };
    if (e < h.overHead) fail('E_FORMAT', `points into the metadata area (before sector ${h.overHead})`);
    const need = h.compressed ? GRAIN_MARKER_HEAD : this.grainBytes(g);
    if (e * SECTOR + need > this.fileSize) fail('E_TRUNCATED', `lies past end of file (${this.fileSize} bytes)`);
    return { kind: h.compressed ? 'compressed' : 'data', sector: e };
  }

  async *extents(signal?: AbortSignal): AsyncIterable<Extent> {
    const m = new ExtentMerger();
    const grains = Math.ceil(this.virtualSize / this.clusterSize);
    const h = this.header;
    for (let g = 0; g < grains; g++) {
      if (g % h.gtes === 0) {
        signal?.throwIfAborted();
        if ((await this.table(g / h.gtes)) === null) {
          g += h.gtes - 1; // a whole grain table absent: all holes
          continue;
        }
        yield* m.done.splice(0);
      }
      const k = (await this.grain(g)).kind;
      if (k !== 'hole') m.add(g * this.clusterSize, this.grainBytes(g), k === 'zero' ? 'zero' : 'data');
    }
    m.finish();
    yield* m.done;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRead(offset, length, this.virtualSize, this.path);
    const out = Buffer.alloc(length); // zeroed: holes and zero grains need no work
    const cs = this.clusterSize;
    for (let pos = offset; pos < offset + length;) {
      const g = Math.floor(pos / cs);
      const inGrain = pos - g * cs;
      const n = Math.min(cs - inGrain, offset + length - pos);
      const gr = await this.grain(g);
      if (gr.kind === 'data') {
        out.set(await readExact(this.fh, this.path, gr.sector * SECTOR + inGrain, n), pos - offset);
      } else if (gr.kind === 'compressed') {
        const data = await this.inflateGrain(g, gr.sector);
        data.copy(out, pos - offset, inGrain, inGrain + n);
      }
      pos += n;
    }
    return out;
  }

  private inflateGrain(g: number, sector: number): Promise<Buffer> {
    let p = this.inflated.get(g);
    if (p) {
      this.inflated.delete(g); // re-insert: most recently used last
    } else {
      p = this.inflateUncached(g, sector);
      p.catch(() => this.inflated.delete(g)); // a failure is not remembered
      if (this.inflated.size >= Math.max(2, GRAIN_CACHE_BYTES / this.clusterSize)) this.inflated.delete(this.inflated.keys().next().value!);
    }
    this.inflated.set(g, p);
    return p;
  }

  /** Read the grain marker at `sector` and inflate its data: exactly the grain, nothing else. */
  private async inflateUncached(g: number, sector: number): Promise<Buffer> {
    const where = `${this.path}: compressed grain ${g} at sector ${sector}`;
    const head = Buffer.from(await readExact(this.fh, this.path, sector * SECTOR, GRAIN_MARKER_HEAD));
    const lba = head.readBigUInt64LE(0);
    const size = head.readUInt32LE(8);
    const data = { path: this.path, grain: g, sector };
    if (lba !== BigInt(g * this.header.grainSectors)) throw new VmdnError('E_FORMAT', `${where}: marker says lba ${lba}, expected ${g * this.header.grainSectors}`, data);
    if (size === 0 || size > MAX_COMPRESSED_FACTOR * this.clusterSize) throw new VmdnError('E_FORMAT', `${where}: compressed size ${size} out of range`, data);
    if (sector * SECTOR + GRAIN_MARKER_HEAD + size > this.fileSize) throw new VmdnError('E_TRUNCATED', `${where}: compressed data runs past end of file`, data);
    const src = await readExact(this.fh, this.path, sector * SECTOR + GRAIN_MARKER_HEAD, size);
    let out: Buffer;
    try {
      out = zlib.inflateSync(src, { maxOutputLength: this.clusterSize });
    } catch (err) {
      throw new VmdnError('E_FORMAT', `${where}: corrupt deflate data (${(err as Error).message})`, data, { cause: err });
    }
    const want = this.grainBytes(g);
    if (out.length < want) throw new VmdnError('E_FORMAT', `${where}: inflated to ${out.length} bytes, expected ${want}`, data);
    if (out.length < this.clusterSize) out = Buffer.concat([out, Buffer.alloc(this.clusterSize - out.length)]);
    return out;
  }

  /** The file handle belongs to whoever opened it (reader.ts). */
  async close(): Promise<void> {}
}

/** Little-endian u32 table -> Uint32Array (copied: the source may be unaligned). */
function u32s(b: Uint8Array): Uint32Array {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new Uint32Array(b.byteLength >>> 2);
  for (let i = 0; i < out.length; i++) out[i] = dv.getUint32(i * 4, true);
  return out;
}
