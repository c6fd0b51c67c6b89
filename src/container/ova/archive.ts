/**
 * An OVA opened for import: its tar members listed in place, its OVF
 * descriptor parsed, and each disk the descriptor names checked against the
 * archive (present, of the stated size) before anything is read from it.
 * Disks are opened as windows of the archive file: VMDK sparse extents
 * (streamOptimized, the OVA norm) and raw members; other formats inside an
 * OVA are refused by name.
 */
import type fs from 'node:fs/promises';
import type { Disk } from '../disk.js';
import { VmdnError } from '../../errors.js';
import { openImageFile } from '../image-file.js';
import { classify } from '../probe.js';
import { RawDisk } from '../raw.js';
import { DiskSlice } from '../slice.js';
import { fileWindow } from '../file-window.js';
import { readUpTo } from '../io.js';
import { SparseExtent } from '../vmdk/sparse.js';
import { VMDK_MAGIC } from '../vmdk/layout.js';
import { isTarHeader, listTar, TAR_BLOCK, type TarMember } from './tar.js';
import { parseOvf, type Ovf } from './ovf.js';
import { MAX_XML_BYTES } from './xml.js';

export interface OvaDisk {
  /** 1-based, in DiskSection order. */
  index: number;
  diskId: string;
  member: TarMember;
  capacity: number;
}

export interface OvaArchive {
  path: string;
  ovfName: string;
  ovfBytes: Uint8Array;
  ovf: Ovf;
  disks: OvaDisk[];
  notes: string[];
  openDisk(d: OvaDisk): Promise<Disk>;
  close(): Promise<void>;
}

/** True if `head` (a file's first 512 bytes) is a tar header: the file is handled as an OVA. */
export function looksLikeTar(head: Uint8Array): boolean {
  return isTarHeader(head.subarray(0, TAR_BLOCK));
}

export async function openOva(file: string): Promise<OvaArchive> {
  const { fh, size } = await openImageFile(file);
  try {
    return await scan(file, fh, size);
  } catch (err) {
    await fh.close();
    throw err;
  }
}

async function scan(file: string, fh: fs.FileHandle, size: number): Promise<OvaArchive> {
  const members = await listTar((p, l) => readUpTo(fh, p, l), size, file);
  const notes: string[] = [];
  const ovfs = members.filter((m) => /\.ovf$/i.test(m.name));
  if (ovfs.length === 0) throw new VmdnError('E_FORMAT', `${file}: a tar archive without an .ovf descriptor is not an OVA`, { path: file });
  if (ovfs.length > 1) throw new VmdnError('E_FORMAT', `${file}: more than one .ovf descriptor (${ovfs.map((m) => m.name).join(', ')})`, { path: file });
  const om = ovfs[0]!;
  if (members[0] !== om) notes.push(`the OVF descriptor ${om.name} is not the archive's first member (the OVF spec wants it first); read anyway`);
  if (om.size > MAX_XML_BYTES) throw new VmdnError('E_FORMAT', `${file}: OVF descriptor of ${om.size} bytes is too large`, { path: file });
  const ovfBytes = await readUpTo(fh, om.offset, om.size);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(ovfBytes);
  } catch (err) {
    throw new VmdnError('E_FORMAT', `${file}: ${om.name} is not UTF-8 text`, { path: file }, { cause: err });
  }
  const source = `${file}:${om.name}`;
  const ovf = parseOvf(text, source);
  const disks: OvaDisk[] = [];
  for (const d of ovf.disks) {
    if (d.fileRef === undefined) {
      notes.push(`disk ${d.diskId} has no file (a blank disk of ${d.capacity} bytes to create): not imported`);
      continue;
    }
    const f = ovf.files.find((x) => x.id === d.fileRef)!;
    if (f.el.attrs.some((a) => /(^|:)(compression|chunkSize)$/.test(a.name))) {
      throw new VmdnError('E_UNSUPPORTED', `${source}: file ${f.href} is stored compressed or chunked in the OVA, which is not supported`, { path: file, href: f.href });
    }
    const member = members.find((m) => m.name === f.href);
    if (!member) throw new VmdnError('E_FORMAT', `${source}: disk ${d.diskId} names file ${f.href}, which the archive does not contain`, { path: file, href: f.href });
    if (f.size !== undefined && f.size !== member.size) {
      throw new VmdnError('E_FORMAT', `${source}: file ${f.href} is ${member.size} bytes in the archive, the OVF says ${f.size}`, { path: file, href: f.href });
    }
    disks.push({ index: disks.length + 1, diskId: d.diskId, member, capacity: d.capacity });
  }
  if (disks.length === 0) throw new VmdnError('E_FORMAT', `${source}: the OVF names no disk files`, { path: file });
  let raw: RawDisk | undefined;
  return {
    path: file, ovfName: om.name, ovfBytes, ovf, disks, notes,
    async openDisk(d) {
      const where = `${file}:${d.member.name}`;
      const head = await readUpTo(fh, d.member.offset, Math.min(d.member.size, 512));
      const fmt = head.length >= 4 && Buffer.from(head).readUInt32LE(0) === VMDK_MAGIC ? 'vmdk' : classify(where, head, new Uint8Array(0));
      let disk: Disk;
      if (fmt === 'vmdk') {
        if (!(head.length >= 4 && Buffer.from(head).readUInt32LE(0) === VMDK_MAGIC)) {
          throw new VmdnError('E_UNSUPPORTED', `${where}: a VMDK descriptor inside an OVA (extents in other members) is not supported`, { path: file });
        }
        disk = await SparseExtent.open(fileWindow(fh, d.member.offset, d.member.size), where, d.member.size);
      } else if (fmt === 'raw') {
        raw ??= await RawDisk.open(file);
        disk = new DiskSlice(raw, d.member.offset, d.member.size);
      } else {
        throw new VmdnError('E_UNSUPPORTED', `${where}: ${fmt} disks inside an OVA are not supported (VMDK and raw are); extract it with tar and import the file`, { path: file, format: fmt });
      }
      if (disk.virtualSize !== d.capacity) notes.push(`disk ${d.index} (${d.member.name}): the OVF says ${d.capacity} bytes, the disk holds ${disk.virtualSize}; the disk's own size is kept`);
      return disk;
    },
    async close() {
      await raw?.close();
      await fh.close();
    },
  };
}
