/**
 * The volumes of a disk: each partition with the filesystem probed on it, or
 * the whole disk as one volume when there is no partition table. A volume
 * that fails to open is listed with its error rather than failing the whole
 * listing: one corrupt partition must not hide the others.
 */
import type { Disk } from '../container/disk.js';
import { readPartitionTable, partitionDisk, type Partition, type PartitionTable } from '../disk/partitions.js';
import { probeFilesystem, type FsKind } from './probe.js';
import type { FileSystem } from './types.js';
import { VmdnError, asVmdnError } from '../errors.js';

export interface Volume {
  /** Partition number, or 0 for a whole-disk filesystem. */
  index: number;
  partition?: Partition;
  offset: number;
  length: number;
  kind: FsKind | 'error';
  fs?: FileSystem;
  /** Why there is no reader (unsupported kind) or what went wrong opening it. */
  note?: string;
}

export interface DiskVolumes {
  table: PartitionTable;
  volumes: Volume[];
}

/** A disk that already knows some of its filesystems: a files-strategy image read from the store. */
export interface KnownFilesystems {
  knownFilesystem(offset: number): FileSystem | undefined;
}

const known = (disk: Disk, offset: number): FileSystem | undefined => (disk as Partial<KnownFilesystems>).knownFilesystem?.(offset);

export async function listVolumes(disk: Disk): Promise<DiskVolumes> {
  const table = await readPartitionTable(disk);
  const parts = table.scheme === 'none'
    ? [{ index: 0, offset: 0, length: disk.virtualSize, partition: undefined as Partition | undefined }]
    : table.partitions.map((p) => ({ index: p.index, offset: p.offset, length: p.length, partition: p as Partition | undefined }));
  const volumes: Volume[] = [];
  for (const p of parts) {
    const v: Volume = { index: p.index, partition: p.partition, offset: p.offset, length: p.length, kind: 'unknown' };
    if (p.partition?.flags.includes('extended')) {
      v.note = 'extended partition (container of logical partitions)';
    } else if (known(disk, p.offset)) {
      v.fs = known(disk, p.offset);
      v.kind = v.fs!.info.type as FsKind;
      v.note = 'stored as a file tree (files strategy)';
    } else if (p.offset + p.length > disk.virtualSize) {
      v.kind = 'error';
      v.note = 'partition extends past the disk end';
    } else {
      try {
        const r = await probeFilesystem(partitionDisk(disk, p));
        v.kind = r.kind;
        v.fs = r.fs;
        v.note = r.note;
      } catch (err) {
        const e = asVmdnError(err);
        v.kind = 'error';
        v.note = `${e.code}: ${e.message}`;
      }
    }
    volumes.push(v);
  }
  return { table, volumes };
}

async function hasOsRelease(fs: FileSystem): Promise<boolean> {
  for (const p of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      await fs.lookup(p);
      return true;
    } catch (err) {
      if (!(err instanceof VmdnError)) throw err;
    }
  }
  return false;
}

/** --partition N, else the first readable volume holding an os-release, else the first readable one. */
export async function pickVolume(dv: DiskVolumes, partition?: number): Promise<Volume & { fs: FileSystem }> {
  const readable = dv.volumes.filter((v): v is Volume & { fs: FileSystem } => !!v.fs);
  if (partition !== undefined) {
    const v = dv.volumes.find((x) => x.index === partition);
    if (!v) throw new VmdnError('E_NOT_FOUND', `no partition ${partition} (have: ${dv.volumes.map((x) => x.index).join(', ') || 'none'})`, { partition });
    if (!v.fs) throw new VmdnError('E_UNSUPPORTED', `partition ${partition}: no readable filesystem (${v.kind}${v.note ? `: ${v.note}` : ''})`, { partition, kind: v.kind });
    return v as Volume & { fs: FileSystem };
  }
  for (const v of readable) if (await hasOsRelease(v.fs)) return v;
  if (readable[0]) return readable[0];
  throw new VmdnError('E_UNSUPPORTED', `no readable filesystem on this disk (${dv.volumes.map((v) => `${v.index}: ${v.kind}`).join(', ') || 'no volumes'})`);
}
