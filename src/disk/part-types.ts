/** Human names for common partition types (display only; unknown types keep their raw id). */
export const BIOS_BOOT_GUID = '21686148-6449-6E6F-744E-656564454649';
export const EFI_SYSTEM_GUID = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';

const GPT_TYPES: Record<string, string> = {
  [BIOS_BOOT_GUID]: 'BIOS boot',
  [EFI_SYSTEM_GUID]: 'EFI System',
  '0FC63DAF-8483-4772-8E79-3D69D8477DE4': 'Linux filesystem',
  '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709': 'Linux root (x86-64)',
  '44479540-F297-41B2-9AF7-D131D5F0458A': 'Linux root (x86)',
  'B921B045-1DF0-41C3-AF44-4C6F280D3FAE': 'Linux root (ARM-64)',
  '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F': 'Linux swap',
  'E6D6D379-F507-44C2-A23C-238F2A3DF928': 'Linux LVM',
  'A19D880F-05FC-4D3B-A006-743F0F84911E': 'Linux RAID',
  '933AC7E1-2EB4-4F13-B844-0E14E2AEF915': 'Linux home',
  'BC13C2FF-59E6-4262-A352-B275FD6F7172': 'Linux extended boot',
  'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7': 'Microsoft basic data',
  'E3C9E316-0B5C-4DB8-817D-F92DF00215AE': 'Microsoft reserved',
  'DE94BBA4-06D1-4D40-A16A-BFD50179D6AC': 'Windows recovery environment',
};

const MBR_TYPES: Record<number, string> = {
  0x01: 'FAT12', 0x04: 'FAT16 <32M', 0x05: 'Extended', 0x06: 'FAT16', 0x07: 'HPFS/NTFS/exFAT',
  0x0b: 'W95 FAT32', 0x0c: 'W95 FAT32 (LBA)', 0x0e: 'W95 FAT16 (LBA)', 0x0f: "W95 Ext'd (LBA)",
  0x82: 'Linux swap / Solaris', 0x83: 'Linux', 0x85: 'Linux extended', 0x8e: 'Linux LVM',
  0xee: 'GPT', 0xef: 'EFI (FAT-12/16/32)', 0xfd: 'Linux raid autodetect',
};

export function gptTypeName(guid: string): string {
  return GPT_TYPES[guid] ?? 'unknown';
}

export function mbrTypeName(t: number): string {
  return MBR_TYPES[t] ?? 'unknown';
}

/** GPT attribute bits with names (UEFI spec + sfdisk's spelling); others are listed as GUID:n. */
export function gptAttributeNames(attrs: bigint): string[] {
  const out: string[] = [];
  if (attrs & 1n) out.push('RequiredPartition');
  if (attrs & 2n) out.push('NoBlockIOProtocol');
  if (attrs & 4n) out.push('LegacyBIOSBootable');
  for (let b = 48n; b < 64n; b++) if (attrs & (1n << b)) out.push(`GUID:${b}`);
  return out;
}
