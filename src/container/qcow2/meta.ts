/**
 * qcow2 metadata built at finish time by the qcow2 writer: placement of the
 * L2 tables, L1 table, refcount blocks and refcount table after the data
 * area, and their serialised bytes. Everything here is pure (no I/O) so the
 * layout arithmetic can be tested on its own.
 */
import { COPIED_FLAG, INCOMPAT, QCOW2_MAGIC, COMPRESSION, qcow2Header } from './layout.js';
import type { CompressionKind } from './compress.js';

/** refcount_order 4: 16-bit refcounts, qemu's default. */
export const REFCOUNT_ORDER = 4;
export const MAX_REFCOUNT = 0xffff;
export const HEADER_LENGTH = 112;

export interface MetaInput {
  clusterSize: number;
  /** Host clusters [0, dataClusters) hold the header and the data area. */
  dataClusters: number;
  /** Refcounts of host clusters [0, dataClusters) (may be longer). */
  dataRefs: Uint16Array;
  /** Number of L1 entries; L1 slot indexes that have an L2 table. */
  l1Size: number;
  l2Slots: readonly number[];
}

export interface MetaPlan {
  /** Host offset of the L2 table of each slot in `l2Slots`, same order. */
  l2Offsets: number[];
  l1Offset: number;
  l1Clusters: number;
  refblockOffset: number;
  refblocks: number;
  reftableOffset: number;
  reftableClusters: number;
  totalClusters: number;
}

const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);

/**
 * Lay metadata out after the data area. The refcount structures must count
 * themselves, so their size is iterated until it stops changing (it only
 * grows, and grows by at most a cluster or two, so this ends quickly).
 */
export function planMetadata(m: MetaInput): MetaPlan {
  const cs = m.clusterSize;
  let next = m.dataClusters;
  const l2Offsets = m.l2Slots.map(() => cs * next++);
  const l1Offset = cs * next;
  const l1Clusters = ceilDiv(m.l1Size * 8, cs);
  next += l1Clusters;
  const perBlock = cs * 8 / (1 << REFCOUNT_ORDER);
  let refblocks = 0;
  let reftableClusters = 0;
  for (;;) {
    const total = next + refblocks + reftableClusters;
    const rb = ceilDiv(total, perBlock);
    const rt = ceilDiv(rb * 8, cs);
    if (rb === refblocks && rt === reftableClusters) break;
    refblocks = rb;
    reftableClusters = rt;
  }
  const refblockOffset = cs * next;
  const reftableOffset = refblockOffset + cs * refblocks;
  return {
    l2Offsets,
    l1Offset,
    l1Clusters,
    refblockOffset,
    refblocks,
    reftableOffset,
    reftableClusters,
    totalClusters: next + refblocks + reftableClusters,
  };
}

/** L1 table bytes. Each L2 table is referenced once, so COPIED (refcount == 1) is always right. */
export function buildL1(m: MetaInput, plan: MetaPlan): Buffer {
  const l1 = Buffer.alloc(plan.l1Clusters * m.clusterSize);
  m.l2Slots.forEach((slot, i) => l1.writeBigUInt64BE(COPIED_FLAG | BigInt(plan.l2Offsets[i]), slot * 8));
  return l1;
}

/** Refcount blocks followed by the refcount table, as one contiguous run of bytes. */
export function buildRefcounts(m: MetaInput, plan: MetaPlan): Buffer {
  const cs = m.clusterSize;
  const out = Buffer.alloc((plan.refblocks + plan.reftableClusters) * cs);
  // Cluster i's refcount sits at byte 2*i of the block run, since blocks are contiguous.
  for (let i = 0; i < m.dataClusters; i++) {
    const r = m.dataRefs[i];
    if (r) out.writeUInt16BE(r, i * 2);
  }
  // Every metadata cluster is referenced exactly once.
  for (let i = m.dataClusters; i < plan.totalClusters; i++) out.writeUInt16BE(1, i * 2);
  const table = plan.refblocks * cs;
  for (let b = 0; b < plan.refblocks; b++) {
    out.writeBigUInt64BE(BigInt(plan.refblockOffset + b * cs), table + b * 8);
  }
  return out;
}

/** Header bytes for cluster 0, including the end-of-extensions marker (8 zero bytes). */
export function buildHeader(
  virtualSize: number,
  clusterBits: number,
  l1Size: number,
  plan: MetaPlan,
  compress: CompressionKind | false,
): Buffer {
  const buf = Buffer.alloc(HEADER_LENGTH + 8);
  const zstd = compress === 'zstd';
  qcow2Header.write(
    {
      magic: QCOW2_MAGIC,
      version: 3,
      backingFileOffset: 0n,
      backingFileSize: 0,
      clusterBits,
      size: BigInt(virtualSize),
      cryptMethod: 0,
      l1Size,
      l1TableOffset: BigInt(plan.l1Offset),
      refcountTableOffset: BigInt(plan.reftableOffset),
      refcountTableClusters: plan.reftableClusters,
      nbSnapshots: 0,
      snapshotsOffset: 0n,
      // The compression_type field only counts when this bit is set; deflate is the implied default.
      incompatibleFeatures: zstd ? INCOMPAT.COMPRESSION_TYPE : 0n,
      compatibleFeatures: 0n,
      autoclearFeatures: 0n,
      refcountOrder: REFCOUNT_ORDER,
      headerLength: HEADER_LENGTH,
      compressionType: zstd ? COMPRESSION.ZSTD : COMPRESSION.DEFLATE,
    },
    buf,
  );
  return buf;
}
