/**
 * `vmdn diff A B --layer disk|blocks|files|packages`: what differs between
 * two images at one layer. Volumes are paired by partition number (0 = a
 * whole-disk filesystem); a volume on one side only is reported, not compared.
 */
import { partitionDisk } from '../disk/partitions.js';
import { inspectOs } from '../os/inspect-os.js';
import type { OpenedImage } from './open-image.js';
import { listVolumes, pickVolume, type DiskVolumes, type Volume } from '../fs/volumes.js';
import { diffTables, diffDiskBytes, diffUsedBlocks, type PartitionChange, type RangeList } from './diff-disk.js';
import { diffFiles, type FilesDiff } from './diff-files.js';
import { diffPackages, type PackagesDiff } from './diff-packages.js';
import { VmdnError } from '../errors.js';

export const LAYERS = ['disk', 'blocks', 'files', 'packages'] as const;
export type Layer = (typeof LAYERS)[number];

export interface VolumePair {
  index: number;
  kind: string;
  note?: string;
  /** The volume exists on one side only, or holds different filesystem types: a difference in itself. */
  mismatch?: boolean;
}

export type DiffResult =
  | { layer: 'disk'; identical: boolean; table: { header: string[]; partitions: PartitionChange[] }; virtualSize: { a: number; b: number }; bytes: RangeList & { method: string } }
  | { layer: 'blocks'; identical: boolean; volumes: Array<VolumePair & { blocks?: RangeList }> }
  | { layer: 'files'; identical: boolean; volumes: Array<VolumePair & { files?: FilesDiff }> }
  | { layer: 'packages'; identical: boolean; partitions: { a: number; b: number }; packages: PackagesDiff };

export interface DiffOptions {
  /** Restrict blocks/files to this partition number (packages: the root volume to read on both sides). */
  partition?: number;
  signal?: AbortSignal;
}

/** Volumes with a readable filesystem on both sides, and why the others are not compared. */
function pairVolumes(a: DiskVolumes, b: DiskVolumes, only?: number): Array<{ index: number; va?: Volume; vb?: Volume; note?: string; mismatch?: boolean }> {
  const idx = [...new Set([...a.volumes, ...b.volumes].map((v) => v.index))].sort((x, y) => x - y).filter((i) => only === undefined || i === only);
  if (only !== undefined && idx.length === 0) throw new VmdnError('E_NOT_FOUND', `no partition ${only} on either image`, { partition: only });
  return idx.map((index) => {
    const va = a.volumes.find((v) => v.index === index), vb = b.volumes.find((v) => v.index === index);
    if (!va) return { index, vb, note: 'only in B', mismatch: true };
    if (!vb) return { index, va, note: 'only in A', mismatch: true };
    if (va.kind !== vb.kind) return { index, va, vb, note: `not compared: ${va.kind} vs ${vb.kind}`, mismatch: true };
    if (!va.fs || !vb.fs) return { index, va, vb, note: `not compared: no readable filesystem (${va.kind})` };
    return { index, va, vb };
  });
}

const kindOf = (p: { va?: Volume; vb?: Volume }) => (p.va?.kind === p.vb?.kind || !p.vb ? p.va!.kind : !p.va ? p.vb.kind : `${p.va.kind}/${p.vb.kind}`);

export async function diffImages(a: OpenedImage, b: OpenedImage, layer: Layer, opts: DiffOptions = {}): Promise<DiffResult> {
  const signal = opts.signal;
  const [dva, dvb] = [await listVolumes(a.disk), await listVolumes(b.disk)];
  switch (layer) {
    case 'disk': {
      const table = diffTables(dva.table, dvb.table);
      const bytes = await diffDiskBytes(a, b, signal);
      const identical = table.header.length === 0 && table.partitions.length === 0 && bytes.count === 0 && a.disk.virtualSize === b.disk.virtualSize;
      return { layer, identical, table, virtualSize: { a: a.disk.virtualSize, b: b.disk.virtualSize }, bytes };
    }
    case 'blocks': {
      const volumes: Array<VolumePair & { blocks?: RangeList }> = [];
      for (const p of pairVolumes(dva, dvb, opts.partition)) {
        if (p.note) { volumes.push({ index: p.index, kind: kindOf(p), note: p.note, mismatch: p.mismatch }); continue; }
        const blocks = await diffUsedBlocks(p.va!, p.vb!, partitionDisk(a.disk, p.va!), partitionDisk(b.disk, p.vb!), signal);
        volumes.push({ index: p.index, kind: kindOf(p), blocks });
      }
      return { layer, identical: volumes.every((v) => !v.mismatch && (v.note !== undefined || v.blocks!.count === 0)), volumes };
    }
    case 'files': {
      const volumes: Array<VolumePair & { files?: FilesDiff }> = [];
      for (const p of pairVolumes(dva, dvb, opts.partition)) {
        if (p.note) { volumes.push({ index: p.index, kind: kindOf(p), note: p.note, mismatch: p.mismatch }); continue; }
        volumes.push({ index: p.index, kind: kindOf(p), files: await diffFiles(p.va!.fs!, p.vb!.fs!, signal) });
      }
      const same = (f: FilesDiff) => f.added.length + f.removed.length + f.changed.length === 0;
      return { layer, identical: volumes.every((v) => !v.mismatch && (v.note !== undefined || same(v.files!))), volumes };
    }
    case 'packages': {
      const [ra, rb] = [await pickVolume(dva, opts.partition), await pickVolume(dvb, opts.partition)];
      const [oa, ob] = [await inspectOs(ra.fs), await inspectOs(rb.fs)];
      if (!oa.packageManager || !ob.packageManager) {
        throw new VmdnError('E_UNSUPPORTED', `no package database on ${!oa.packageManager ? 'A' : 'B'} (volume ${!oa.packageManager ? ra.index : rb.index})`);
      }
      const packages = diffPackages(oa.packages, ob.packages);
      const identical = Object.values(packages).every((l) => l.length === 0);
      return { layer, identical, partitions: { a: ra.index, b: rb.index }, packages };
    }
  }
}
