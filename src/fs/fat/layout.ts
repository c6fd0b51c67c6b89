/**
 * FAT boot sector (BPB) layouts and the geometry derived from them. Every
 * field that places something on the device is checked against the device
 * size here, once, so the reader can trust the resulting numbers.
 */
import { defineStruct } from '../../util/struct.js';
import { check } from '../../errors.js';

export const BpbStruct = defineStruct('fat-bpb', 512, 'le', [
  { name: 'jump', type: 'bytes:3', offset: 0 },
  { name: 'oem', type: 'bytes:8', offset: 3 },
  { name: 'bytesPerSector', type: 'u16', offset: 11 },
  { name: 'sectorsPerCluster', type: 'u8', offset: 13 },
  { name: 'reservedSectors', type: 'u16', offset: 14 },
  { name: 'numFats', type: 'u8', offset: 16 },
  { name: 'rootEntries', type: 'u16', offset: 17 },
  { name: 'totalSectors16', type: 'u16', offset: 19 },
  { name: 'media', type: 'u8', offset: 21 },
  { name: 'fatSize16', type: 'u16', offset: 22 },
  { name: 'sectorsPerTrack', type: 'u16', offset: 24 },
  { name: 'numHeads', type: 'u16', offset: 26 },
  { name: 'hiddenSectors', type: 'u32', offset: 28 },
  { name: 'totalSectors32', type: 'u32', offset: 32 },
  { name: 'signature', type: 'u16', offset: 510 },
] as const);

/** FAT12/16 extended BPB. */
export const Ebpb16Struct = defineStruct('fat16-ebpb', 512, 'le', [
  { name: 'driveNumber', type: 'u8', offset: 36 },
  { name: 'bootSig', type: 'u8', offset: 38 },
  { name: 'volumeId', type: 'u32', offset: 39 },
  { name: 'volumeLabel', type: 'bytes:11', offset: 43 },
  { name: 'fsType', type: 'bytes:8', offset: 54 },
] as const);

/** FAT32 extended BPB. */
export const Ebpb32Struct = defineStruct('fat32-ebpb', 512, 'le', [
  { name: 'fatSize32', type: 'u32', offset: 36 },
  { name: 'extFlags', type: 'u16', offset: 40 },
  { name: 'fsVersion', type: 'u16', offset: 42 },
  { name: 'rootCluster', type: 'u32', offset: 44 },
  { name: 'fsInfoSector', type: 'u16', offset: 48 },
  { name: 'backupBootSector', type: 'u16', offset: 50 },
  { name: 'driveNumber', type: 'u8', offset: 64 },
  { name: 'bootSig', type: 'u8', offset: 66 },
  { name: 'volumeId', type: 'u32', offset: 67 },
  { name: 'volumeLabel', type: 'bytes:11', offset: 71 },
  { name: 'fsType', type: 'bytes:8', offset: 82 },
] as const);

export interface FatGeometry {
  fatType: 12 | 16 | 32;
  bytesPerSector: number;
  clusterSize: number;
  /** Byte offsets on the device. */
  fatOffset: number;
  fatBytes: number;
  numFats: number;
  /** FAT12/16 fixed root directory; FAT32: rootCluster instead. */
  rootDirOffset: number;
  rootDirBytes: number;
  rootCluster: number;
  dataOffset: number;
  /** Data clusters are numbered 2 .. clusterCount+1. */
  clusterCount: number;
  totalBytes: number;
  volumeId: number;
  bpbLabel: string;
  /** Which FAT copy is live (FAT32 mirroring disabled), else 0. */
  activeFat: number;
}

const label = (b: Uint8Array): string => Buffer.from(b).toString('latin1').replace(/ +$/, '');

/** Cheap test used by probing: could this sector be a FAT boot sector at all? */
export function looksLikeFat(s: Uint8Array): boolean {
  if (s.length < 512 || s[510] !== 0x55 || s[511] !== 0xaa) return false;
  if (s[0] !== 0xeb && s[0] !== 0xe9) return false;
  const b = BpbStruct.parse(s);
  const bps = b.bytesPerSector, spc = b.sectorsPerCluster;
  return [512, 1024, 2048, 4096].includes(bps) && spc > 0 && (spc & (spc - 1)) === 0 && b.numFats >= 1 && b.reservedSectors >= 1;
}

export function parseGeometry(s: Uint8Array, deviceSize: number): FatGeometry {
  check(s.length >= 512, 'E_FORMAT', 'FAT boot sector truncated');
  const b = BpbStruct.parse(s);
  check(b.signature === 0xaa55, 'E_FORMAT', 'FAT boot sector lacks the 0x55AA signature');
  const bps = b.bytesPerSector, spc = b.sectorsPerCluster;
  check([512, 1024, 2048, 4096].includes(bps), 'E_FORMAT', `FAT bytes per sector ${bps} is invalid`);
  check(spc > 0 && (spc & (spc - 1)) === 0, 'E_FORMAT', `FAT sectors per cluster ${spc} is not a power of two`);
  check(bps * spc <= 256 * 1024, 'E_FORMAT', `FAT cluster size ${bps * spc} is too large`);
  check(b.reservedSectors >= 1, 'E_FORMAT', 'FAT reserved sector count is 0');
  check(b.numFats >= 1 && b.numFats <= 4, 'E_FORMAT', `FAT count ${b.numFats} is invalid`);
  const totalSectors = b.totalSectors16 || b.totalSectors32;
  check(totalSectors > 0, 'E_FORMAT', 'FAT total sector count is 0');
  const totalBytes = totalSectors * bps;
  check(totalBytes <= deviceSize, 'E_FORMAT', `FAT filesystem (${totalBytes} bytes) is larger than its device (${deviceSize})`);
  const isFat32Layout = b.fatSize16 === 0;
  const e32 = Ebpb32Struct.parse(s);
  const fatSectors = isFat32Layout ? e32.fatSize32 : b.fatSize16;
  check(fatSectors > 0, 'E_FORMAT', 'FAT size is 0');
  check(!isFat32Layout || b.rootEntries === 0, 'E_FORMAT', 'FAT32 layout with a fixed root directory');
  const rootDirSectors = Math.ceil((b.rootEntries * 32) / bps);
  const dataStart = b.reservedSectors + b.numFats * fatSectors + rootDirSectors;
  check(dataStart < totalSectors, 'E_FORMAT', `FAT metadata (${dataStart} sectors) fills the whole ${totalSectors}-sector volume`);
  const clusterCount = Math.floor((totalSectors - dataStart) / spc);
  check(clusterCount >= 1, 'E_FORMAT', 'FAT volume has no data clusters');
  // Linux's rule (not the label text): FAT32 iff the 16-bit FAT size is 0, else 12 vs 16 by cluster count.
  // mkfs.vfat -F 32 makes undersized FAT32 volumes that Microsoft's pure count rule would misread.
  const fatType: 12 | 16 | 32 = isFat32Layout ? 32 : clusterCount < 4085 ? 12 : 16;
  const needBytes = fatType === 12 ? Math.ceil(((clusterCount + 2) * 3) / 2) : (clusterCount + 2) * (fatType / 8);
  check(fatSectors * bps >= needBytes, 'E_FORMAT', `FAT (${fatSectors} sectors) too small for ${clusterCount} clusters`);
  const e16 = Ebpb16Struct.parse(s);
  let rootCluster = 0, activeFat = 0;
  if (fatType === 32) {
    rootCluster = e32.rootCluster;
    check(rootCluster >= 2 && rootCluster < clusterCount + 2, 'E_FORMAT', `FAT32 root cluster ${rootCluster} is out of range`);
    if (e32.extFlags & 0x80) activeFat = e32.extFlags & 0x0f;
    check(activeFat < b.numFats, 'E_FORMAT', `FAT32 active FAT ${activeFat} does not exist`);
  }
  const ext = fatType === 32 ? e32 : e16;
  return {
    fatType, bytesPerSector: bps, clusterSize: bps * spc,
    fatOffset: b.reservedSectors * bps, fatBytes: fatSectors * bps, numFats: b.numFats,
    rootDirOffset: (b.reservedSectors + b.numFats * fatSectors) * bps, rootDirBytes: b.rootEntries * 32, rootCluster,
    dataOffset: dataStart * bps, clusterCount, totalBytes,
    volumeId: ext.bootSig === 0x29 ? ext.volumeId : 0,
    bpbLabel: ext.bootSig === 0x29 ? label(ext.volumeLabel) : '',
    activeFat,
  };
}
