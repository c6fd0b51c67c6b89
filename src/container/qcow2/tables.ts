/**
 * L1/L2 mapping of one qcow2 layer: turns guest ranges into maximal runs of
 * data (with contiguous host offsets), zero, compressed or unallocated space.
 * Every entry is validated when its L2 table is loaded, so readers can trust
 * host offsets. Work is linear in the number of distinct L2 tables (duplicate
 * L1 entries are rejected), which bounds the cost of hostile images.
 */
import type fs from 'node:fs/promises';
import { VmdnError, type ErrorCode } from '../../errors.js';
import { compressedFields, SUBCLUSTERS } from './layout.js';
import type { Qcow2Header } from './header.js';

export type RunKind = 'data' | 'zero' | 'compressed' | 'unalloc';

export interface Run {
  readonly kind: RunKind;
  /** Guest offset and length (clipped to the requested range). */
  readonly start: number;
  readonly length: number;
  /** data: host offset of `start`; compressed: host offset of the compressed bytes. */
  readonly host: number;
  /** compressed: byte length of the compressed data (sector-rounded, may overhang EOF by < 512). */
  readonly csize: number;
  /** compressed: guest offset of the cluster (the run may be a clipped part of it). */
  readonly clusterStart: number;
}

const K_UNALLOC = 0, K_DATA = 1, K_ZERO = 2, K_COMPRESSED = 3, K_SUB = 4;
const KIND_NAMES: RunKind[] = ['unalloc', 'data', 'zero', 'compressed'];
/** Decoded tables kept in memory; ~2 bytes per guest cluster each, so this is a few tens of MiB at most. */
const MAX_CACHED_L2 = 1024;

interface L2Table {
  kind: Uint8Array;
  host: Float64Array;
  csize: Float64Array | null;
  /** Extended L2 only: per-entry subcluster allocation / zero bitmaps. */
  alloc: Uint32Array | null;
  zero: Uint32Array | null;
}

/** Accumulates runs, merging a unit into the previous run when it continues it. */
class RunBuilder {
  out: Run[] = [];
  private k = -1; private s = 0; private e = 0; private h = 0;
  add(kind: number, start: number, end: number, host: number): void {
    if (kind === this.k && start === this.e && (kind !== K_DATA || host === this.h + (start - this.s))) {
      this.e = end;
      return;
    }
    this.flush();
    this.k = kind; this.s = start; this.e = end; this.h = host;
  }
  addCompressed(start: number, end: number, host: number, csize: number, clusterStart: number): void {
    this.flush();
    this.out.push({ kind: 'compressed', start, length: end - start, host, csize, clusterStart });
  }
  flush(): void {
    if (this.k >= 0 && this.e > this.s) {
      this.out.push({ kind: KIND_NAMES[this.k], start: this.s, length: this.e - this.s, host: this.h, csize: 0, clusterStart: 0 });
    }
    this.k = -1;
  }
}

export class L2Map {
  private readonly cache = new Map<number, L2Table>();
  private readonly cs: number;
  private readonly l2Entries: number;
  private readonly unitSize: number;
  private readonly unitsPerCluster: number;

  private constructor(
    private readonly fh: fs.FileHandle,
    private readonly path: string,
    private readonly hdr: Qcow2Header,
    private readonly fileSize: number,
    private readonly l1: Float64Array,
  ) {
    this.cs = hdr.clusterSize;
    this.l2Entries = hdr.clusterSize / (hdr.extendedL2 ? 16 : 8);
    this.unitsPerCluster = hdr.extendedL2 ? SUBCLUSTERS : 1;
    this.unitSize = this.cs / this.unitsPerCluster;
  }

  private fail(code: ErrorCode, msg: string): never {
    throw new VmdnError(code, `${this.path}: ${msg}`, { path: this.path });
  }

  /** Read and validate the L1 entries that cover the virtual size (the header already checked the table's extent). */
  static async load(fh: fs.FileHandle, path: string, hdr: Qcow2Header, fileSize: number): Promise<L2Map> {
    const l2Entries = hdr.clusterSize / (hdr.extendedL2 ? 16 : 8);
    const n = Math.ceil(Math.ceil(hdr.virtualSize / hdr.clusterSize) / l2Entries);
    const buf = await readExact(fh, path, hdr.l1TableOffset, n * 8);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
    const l1 = new Float64Array(n);
    const seen = new Set<number>();
    const bad = (code: ErrorCode, i: number, msg: string): never => {
      throw new VmdnError(code, `${path}: L1 entry ${i}: ${msg}`, { path });
    };
    for (let i = 0; i < n; i++) {
      const hi = dv.getUint32(i * 8), lo = dv.getUint32(i * 8 + 4);
      if ((hi & 0x7f000000) !== 0 || (lo & 0x1ff) !== 0) bad('E_FORMAT', i, 'reserved bits set');
      const off = (hi & 0x00ffffff) * 2 ** 32 + lo;
      if (off === 0) continue;
      if (off % hdr.clusterSize !== 0) bad('E_FORMAT', i, `L2 table offset ${off} is not cluster-aligned`);
      if (off + hdr.clusterSize > fileSize) bad('E_TRUNCATED', i, `L2 table at ${off} lies past end of file (${fileSize})`);
      if (seen.has(off)) bad('E_FORMAT', i, `L2 table at ${off} is referenced twice`);
      seen.add(off);
      l1[i] = off;
    }
    return new L2Map(fh, path, hdr, fileSize, l1);
  }

  private async table(i: number): Promise<L2Table> {
    const hit = this.cache.get(i);
    if (hit) return hit;
    const raw = await readExact(this.fh, this.path, this.l1[i], this.cs);
    const t = this.decode(raw, i);
    if (this.cache.size >= MAX_CACHED_L2) this.cache.delete(this.cache.keys().next().value as number);
    this.cache.set(i, t);
    return t;
  }

  private decode(raw: Uint8Array, l1Index: number): L2Table {
    const { cs, l2Entries, hdr, fileSize } = this;
    const ext = hdr.extendedL2;
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.length);
    // Entries past the end of the disk are never used, so they are not validated either.
    const firstCluster = l1Index * l2Entries;
    const n = Math.min(l2Entries, Math.ceil(hdr.virtualSize / cs) - firstCluster);
    const t: L2Table = {
      kind: new Uint8Array(n), host: new Float64Array(n), csize: null,
      alloc: ext ? new Uint32Array(n) : null, zero: ext ? new Uint32Array(n) : null,
    };
    const bad = (code: ErrorCode, j: number, msg: string): never =>
      this.fail(code, `L2 entry for guest cluster ${firstCluster + j}: ${msg}`);
    const stride = ext ? 16 : 8;
    for (let j = 0; j < n; j++) {
      const hi = dv.getUint32(j * stride), lo = dv.getUint32(j * stride + 4);
      const bmHi = ext ? dv.getUint32(j * stride + 8) : 0, bmLo = ext ? dv.getUint32(j * stride + 12) : 0;
      if (hi & 0x40000000) {
        if (bmHi !== 0 || bmLo !== 0) bad('E_FORMAT', j, 'compressed cluster with a subcluster bitmap');
        const entry = (BigInt(hi & 0x3fffffff) << 32n) | BigInt(lo);
        const { hostOffset, sectors } = compressedFields(entry, hdr.clusterBits);
        if (hostOffset >= 2 ** 56) bad('E_FORMAT', j, 'compressed offset uses reserved bits');
        const csize = sectors * 512 - (hostOffset % 512);
        if (hostOffset < cs) bad('E_FORMAT', j, `compressed data at ${hostOffset} overlaps the header cluster`);
        // The last sector may be cut short by EOF (qemu does not pad it), nothing more.
        if (hostOffset >= fileSize || hostOffset + csize > fileSize + 511) {
          bad('E_TRUNCATED', j, `compressed data at ${hostOffset}+${csize} lies past end of file (${fileSize})`);
        }
        t.kind[j] = K_COMPRESSED;
        t.host[j] = hostOffset;
        (t.csize ??= new Float64Array(n))[j] = csize;
        continue;
      }
      if ((hi & 0x3f000000) !== 0 || (lo & (ext ? 0x1ff : 0x1fe)) !== 0) bad('E_FORMAT', j, 'reserved bits set');
      const off = (hi & 0x00ffffff) * 2 ** 32 + ((lo & 0xfffffe00) >>> 0);
      if (off % cs !== 0) bad('E_FORMAT', j, `host offset ${off} is not cluster-aligned`);
      t.host[j] = off;
      if (ext) {
        if ((bmLo & bmHi) !== 0) bad('E_FORMAT', j, 'subcluster both allocated and zero');
        if (bmLo !== 0) {
          if (off === 0) bad('E_FORMAT', j, 'allocated subclusters without a host offset');
          const last = 31 - Math.clz32(bmLo);
          if (off + last * this.unitSize >= fileSize) bad('E_TRUNCATED', j, `host cluster ${off} lies past end of file (${fileSize})`);
        }
        t.kind[j] = K_SUB;
        t.alloc![j] = bmLo;
        t.zero![j] = bmHi;
      } else if (lo & 1) {
        if (hdr.version < 3) bad('E_FORMAT', j, 'zero flag in a version 2 image');
        t.kind[j] = K_ZERO;
      } else if (off === 0) {
        t.kind[j] = K_UNALLOC;
      } else {
        if (off >= fileSize) bad('E_TRUNCATED', j, `host cluster ${off} lies past end of file (${fileSize})`);
        t.kind[j] = K_DATA;
      }
    }
    return t;
  }

  /** Runs covering exactly [start, end), in order; adjacent compatible units merged. */
  async *runs(start: number, end: number): AsyncGenerator<Run> {
    const { cs, l2Entries, unitSize, unitsPerCluster } = this;
    const rb = new RunBuilder();
    const span = l2Entries * cs;
    for (let ti = Math.floor(start / span); ti * span < end; ti++) {
      const tStart = ti * span;
      if (this.l1[ti] === 0) {
        rb.add(K_UNALLOC, Math.max(start, tStart), Math.min(end, tStart + span), 0);
      } else {
        const t = await this.table(ti);
        const j0 = Math.floor((Math.max(start, tStart) - tStart) / cs);
        const j1 = Math.min(t.kind.length, Math.ceil((end - tStart) / cs));
        for (let j = j0; j < j1; j++) {
          const cStart = tStart + j * cs;
          const k = t.kind[j];
          if (k === K_COMPRESSED) {
            rb.addCompressed(Math.max(start, cStart), Math.min(end, cStart + cs), t.host[j], t.csize![j], cStart);
          } else if (k !== K_SUB) {
            rb.add(k, Math.max(start, cStart), Math.min(end, cStart + cs), t.host[j] + Math.max(0, start - cStart));
          } else {
            const a = t.alloc![j], z = t.zero![j];
            for (let u = 0; u < unitsPerCluster; u++) {
              const uStart = cStart + u * unitSize;
              if (uStart + unitSize <= start) continue;
              if (uStart >= end) break;
              const bit = 1 << u;
              const kind = a & bit ? K_DATA : z & bit ? K_ZERO : K_UNALLOC;
              const s = Math.max(start, uStart);
              rb.add(kind, s, Math.min(end, uStart + unitSize), t.host[j] + (s - cStart));
            }
          }
        }
      }
      // Yield per table so memory stays bounded on huge ranges.
      if (rb.out.length > 0) {
        yield* rb.out;
        rb.out = [];
      }
    }
    rb.flush();
    yield* rb.out;
  }
}

/** Read exactly `length` bytes at `pos`; a short read means the file is truncated. */
export async function readExact(fh: fs.FileHandle, path: string, pos: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, pos + done);
    if (bytesRead === 0) throw new VmdnError('E_TRUNCATED', `${path}: unexpected end of file at ${pos + done}`, { path });
    done += bytesRead;
  }
  return buf;
}
