/**
 * Image format detection by magic bytes. qcow2, VMDK, VHD, VHDX, VDI and raw are readable;
 * other well-known formats are named and refused so they are never silently
 * treated as raw disks (a VMDK read as raw would "work" and be garbage).
 */
import { VmdnError } from '../errors.js';
import { QCOW2_MAGIC } from './qcow2/layout.js';
import { openImageFile } from './image-file.js';

export type ReadableFormat = 'qcow2' | 'vmdk' | 'vhd' | 'vhdx' | 'vdi' | 'raw';

const PROBE_BYTES = 512;

function unsupported(path: string, format: string): never {
  throw new VmdnError('E_UNSUPPORTED', `${path}: ${format} images are not supported yet (convert to qcow2, VHD, VDI or raw)`, { path, format });
}

function startsWith(buf: Uint8Array, at: number, s: string): boolean {
  if (at + s.length > buf.length) return false;
  for (let i = 0; i < s.length; i++) if (buf[at + i] !== s.charCodeAt(i)) return false;
  return true;
}

/** Classify a file from its first bytes (`head`) and last 512 bytes (`tail`, for VHD footers). */
export function classify(path: string, head: Uint8Array, tail: Uint8Array): ReadableFormat {
  if (head.length >= 8) {
    const dv = new DataView(head.buffer, head.byteOffset, head.length);
    if (dv.getUint32(0) === QCOW2_MAGIC) {
      const version = dv.getUint32(4);
      if (version === 1) unsupported(path, 'qcow (version 1)');
      return 'qcow2'; // other versions are reported by the qcow2 reader itself
    }
  }
  // VMDK: a sparse extent header, or a text descriptor naming the extent files.
  if (startsWith(head, 0, 'KDMV') || startsWith(head, 0, '# Disk DescriptorFile')) return 'vmdk';
  if (startsWith(head, 0, 'vhdxfile')) return 'vhdx';
  // VHD: a footer at the end (all kinds), with a copy at the start (dynamic and differencing).
  if (startsWith(head, 0, 'conectix') || startsWith(tail, 0, 'conectix')) return 'vhd';
  // VDI: text banner, then the little-endian signature 0xbeda107f at 0x40.
  if (head.length >= 0x44 && head[0x40] === 0x7f && head[0x41] === 0x10 && head[0x42] === 0xda && head[0x43] === 0xbe) return 'vdi';
  if (startsWith(head, 0, 'QED\0')) unsupported(path, 'QED');
  if (startsWith(head, 0, 'LUKS\xba\xbe')) unsupported(path, 'LUKS');
  return 'raw';
}

/** Detect the format of the image at `path`; other known formats throw E_UNSUPPORTED. */
export async function probeFormat(path: string): Promise<ReadableFormat> {
  const { fh, size } = await openImageFile(path);
  try {
    const head = Buffer.alloc(Math.min(PROBE_BYTES, size));
    await fh.read(head, 0, head.length, 0);
    const tail = Buffer.alloc(size >= 2 * PROBE_BYTES ? PROBE_BYTES : 0);
    if (tail.length > 0) await fh.read(tail, 0, tail.length, size - PROBE_BYTES);
    return classify(path, head, tail);
  } finally {
    await fh.close();
  }
}
