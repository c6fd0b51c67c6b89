/**
 * Shared by both VMDK writers: turns the DiskWriter's ascending writes into
 * whole grains (assembling partial ones, zero-filling what was not written),
 * and builds the header sector both writers start with.
 */
import { VmdnError } from '../../errors.js';
import { checkVirtualSize, checkWrite, isZero } from '../writer-file.js';
import { sparseHeader, VMDK_MAGIC, SECTOR, FLAGS, NL_CHECK, COMPRESS_DEFLATE, COMPRESS_NONE, GD_AT_END } from './layout.js';

/** 64 KiB grains and 512-entry tables: what VMware and qemu write. */
export const GRAIN_SECTORS = 128;
export const GTES = 512;
export const DESCRIPTOR_OFFSET = 1;
export const DESCRIPTOR_SECTORS = 20;
/** Sector numbers in grain tables are 32 bits: no grain can start past 2 TiB into the file. */
export const MAX_FILE_SECTOR = 0xffffffff;
/** The largest disk the writers accept: what 32-bit grain table entries can address. */
export const MAX_WRITE_SIZE = (MAX_FILE_SECTOR - 1) * SECTOR;

/** The writers' size check: VMDK has no way to say "empty disk" (qemu refuses capacity 0 too). */
export function checkVmdkSize(virtualSize: number): void {
  checkVirtualSize(virtualSize, MAX_WRITE_SIZE);
  if (virtualSize === 0) throw new VmdnError('E_USAGE', 'a VMDK cannot hold an empty (0-byte) disk', { virtualSize });
}

export type EmitGrain = (index: number, grain: Buffer) => Promise<void>;

export class GrainAssembler {
  readonly grainBytes = GRAIN_SECTORS * SECTOR;
  private readonly pend = Buffer.alloc(GRAIN_SECTORS * SECTOR);
  private pendIndex = -1;
  private writtenEnd = 0;

  constructor(
    private readonly virtualSize: number,
    /** Called with each grain holding non-zero bytes, in ascending order; all-zero grains stay unallocated. */
    private readonly emit: EmitGrain,
  ) {}

  async write(offset: number, src: Buffer): Promise<void> {
    this.writtenEnd = checkWrite(offset, src.length, this.writtenEnd, this.virtualSize);
    const gs = this.grainBytes;
    for (let i = 0, pos = offset; i < src.length;) {
      const g = Math.floor(pos / gs);
      const inGrain = pos - g * gs;
      const n = Math.min(gs - inGrain, src.length - i);
      if (this.pendIndex >= 0 && this.pendIndex !== g) await this.flush();
      if (n === gs) {
        await this.put(g, src.subarray(i, i + gs));
      } else {
        this.pendIndex = g;
        src.copy(this.pend, inGrain, i, i + n);
      }
      pos += n;
      i += n;
    }
  }

  /** Emit the grain still being assembled, if any. */
  async flush(): Promise<void> {
    if (this.pendIndex < 0) return;
    const g = this.pendIndex;
    this.pendIndex = -1;
    await this.put(g, this.pend);
    this.pend.fill(0); // bytes the next partial writes skip must read as zeros
  }

  private async put(g: number, grain: Buffer): Promise<void> {
    if (!isZero(grain, 0, grain.length)) await this.emit(g, grain);
  }
}

export interface HeaderInput {
  capacity: number; // sectors
  compressed: boolean;
  gdOffset: number | 'end';
  overHead: number;
}

/** The 512-byte sparse extent header the writers put first (and, for streams, in the footer). */
export function buildHeader(h: HeaderInput): Buffer {
  const out = Buffer.alloc(SECTOR);
  sparseHeader.write({
    magic: VMDK_MAGIC,
    // streamOptimized is version 3 (as VMware and qemu write it); plain sparse extents version 1.
    version: h.compressed ? 3 : 1,
    flags: FLAGS.NL_DETECT | (h.compressed ? FLAGS.COMPRESSED | FLAGS.MARKERS : 0),
    capacity: BigInt(h.capacity),
    grainSize: BigInt(GRAIN_SECTORS),
    descriptorOffset: BigInt(DESCRIPTOR_OFFSET),
    descriptorSize: BigInt(DESCRIPTOR_SECTORS),
    numGTEsPerGT: GTES,
    rgdOffset: 0n,
    gdOffset: h.gdOffset === 'end' ? GD_AT_END : BigInt(h.gdOffset),
    overHead: BigInt(h.overHead),
    uncleanShutdown: 0,
    nlCheck: Uint8Array.from(NL_CHECK),
    compressAlgorithm: h.compressed ? COMPRESS_DEFLATE : COMPRESS_NONE,
  }, out);
  return out;
}

/** The descriptor text in its sectors (NUL-padded, as qemu does). */
export function descriptorSectors(text: string): Buffer {
  const out = Buffer.alloc(DESCRIPTOR_SECTORS * SECTOR);
  if (Buffer.byteLength(text, 'latin1') >= out.length) throw new VmdnError('E_INTERNAL', 'vmdk descriptor does not fit its sectors');
  out.write(text, 'latin1');
  return out;
}

/** A table of u32 sector numbers as little-endian bytes, padded to whole sectors. */
export function tableBytes(t: Uint32Array): Buffer {
  const out = Buffer.alloc(Math.ceil((t.length * 4) / SECTOR) * SECTOR);
  for (let i = 0; i < t.length; i++) out.writeUInt32LE(t[i], i * 4);
  return out;
}

/** The name written into the embedded descriptor: the output's file name, made safe to quote. */
export function extentName(outName: string): string {
  const n = outName.replace(/[^A-Za-z0-9._+-]/g, '_').slice(0, 200);
  return n === '' || n === '.' || n === '..' ? 'disk.vmdk' : n;
}
