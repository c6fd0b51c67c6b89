/**
 * `vmdn inspect`: what a disk holds, in one document: the partition table,
 * each volume's filesystem (type, UUID, label, size, used), and the OS found
 * on the root volume (os-release, hostname, package manager and packages).
 */
import type { Disk } from '../container/disk.js';
import { inspectOs, type OsPackage } from '../os/inspect-os.js';
import { listVolumes, pickVolume } from '../fs/volumes.js';
import { asVmdnError } from '../errors.js';

export interface InspectResult {
  virtualSize: number;
  scheme: 'gpt' | 'mbr' | 'none';
  diskId?: string;
  partitions: Array<{ index: number; start: number; size: number; offset: number; length: number; type: string; typeName: string; name: string; uuid?: string; bootable: boolean }>;
  filesystems: Array<{ index: number; kind: string; uuid?: string; label?: string; totalBytes?: number; usedBytes?: number; note?: string; warnings?: string[] }>;
  os: null | {
    partition: number;
    prettyName: string | null;
    id: string | null;
    versionId: string | null;
    hostname: string | null;
    packageManager: 'dpkg' | 'rpm' | null;
    packageCount: number;
    packages: OsPackage[];
    warnings: string[];
  };
  warnings: string[];
}

export async function inspectDisk(disk: Disk): Promise<InspectResult> {
  const dv = await listVolumes(disk);
  const warnings = [...dv.table.warnings];
  const filesystems: InspectResult['filesystems'] = dv.volumes.map((v) => ({
    index: v.index, kind: v.kind,
    ...(v.fs ? { uuid: v.fs.info.uuid, label: v.fs.info.label, totalBytes: v.fs.info.totalBytes, usedBytes: v.fs.info.usedBytes } : {}),
    ...(v.note ? { note: v.note } : {}),
  }));
  let os: InspectResult['os'] = null;
  if (dv.volumes.some((v) => v.fs)) {
    const root = await pickVolume(dv);
    try {
      const o = await inspectOs(root.fs);
      if (o.osRelease || o.packageManager || o.hostname) {
        os = {
          partition: root.index,
          prettyName: o.osRelease?.PRETTY_NAME ?? null, id: o.osRelease?.ID ?? null, versionId: o.osRelease?.VERSION_ID ?? null,
          hostname: o.hostname, packageManager: o.packageManager,
          packageCount: o.packages.length,
          packages: [...o.packages].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.arch < b.arch ? -1 : 1)),
          warnings: o.warnings,
        };
      }
    } catch (err) {
      warnings.push(`OS inspection of volume ${root.index} failed: ${asVmdnError(err).message}`);
    }
  }
  // Readers collect non-fatal findings (checksum mismatches, ...) while they read: report them last.
  for (let i = 0; i < dv.volumes.length; i++) {
    const w = dv.volumes[i]!.fs?.warnings;
    if (w?.length) filesystems[i]!.warnings = [...w];
  }
  return {
    virtualSize: disk.virtualSize, scheme: dv.table.scheme, diskId: dv.table.diskId,
    partitions: dv.table.partitions.map((p) => ({
      index: p.index, start: p.start, size: p.size, offset: p.offset, length: p.length,
      type: p.type, typeName: p.typeName, name: p.name, uuid: p.uuid, bootable: p.bootable,
    })),
    filesystems, os, warnings,
  };
}
