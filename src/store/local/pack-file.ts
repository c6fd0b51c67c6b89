/**
 * Pack files (store layout 2, docs/format.md): packs/<id>.pack holds objects
 * one after another, each an entry header then the object's zstd frame
 * exactly as a loose file held it. The index says where each object is; the
 * headers make a pack readable without it (verify scans them, and a lost
 * index could be rebuilt). A crash can leave entries no index row points to:
 * garbage, never read, reclaimed by gc's repack.
 *
 * One file per object cost an open/read/close to read and a create/rename to
 * write, which was most of an export's and a pull's time (issues 13, 14).
 */
import fsSync from 'node:fs';
import { defineStruct } from '../../util/struct.js';
import { maxEncodedSize, MAX_OBJECT_SIZE } from '../codec.js';

/** 'VPAK' little-endian: the first bytes of every entry. */
export const PACK_MAGIC = 0x4b415056;
export const PACK_VERSION = 1;

export const PackEntry = defineStruct('PackEntry', 48, 'le', [
  { name: 'magic', type: 'u32', offset: 0 },
  { name: 'version', type: 'u8', offset: 4 },
  // 5..7 reserved (zero)
  /** Length of the zstd frame that follows the header. */
  { name: 'length', type: 'u32', offset: 8 },
  // 12..15 reserved (zero)
  /** SHA-256 of the object's decoded bytes. */
  { name: 'digest', type: 'bytes:32', offset: 16 },
] as const);

export const ENTRY_HEADER = PackEntry.size;
export const MAX_FRAME = maxEncodedSize(MAX_OBJECT_SIZE);
/** A writer starts a new pack once its current one reaches this size. */
export const PACK_ROTATE_BYTES = 128 * 1024 * 1024;
/** Pack ids are 16 hex digits (random). */
export const PACK_ID = /^[0-9a-f]{16}$/;

export function packPath(packsDir: string, id: string): string {
  return `${packsDir}/${id}.pack`;
}

/** A writer's claim on a pack it may still append to (gc leaves such packs alone while the pid lives). */
export function writingMarker(packsDir: string, id: string): string {
  return `${packsDir}/${id}.writing`;
}

/**
 * PackEntry.write into `b` (ENTRY_HEADER bytes, zero-filled by the caller) without the
 * struct's per-field work: a pull writes one per object.
 */
export function writeEntryHeader(b: Buffer, digest: string, length: number): void {
  b.writeUInt32LE(PACK_MAGIC, 0);
  b[4] = PACK_VERSION;
  b.writeUInt32LE(length, 8);
  b.write(digest, 16, 32, 'hex');
}

export function entryHeader(digest: string, length: number): Buffer {
  const b = Buffer.alloc(ENTRY_HEADER);
  PackEntry.write({ magic: PACK_MAGIC, version: PACK_VERSION, length, digest: Buffer.from(digest, 'hex') }, b);
  return b;
}

export interface ScannedEntry {
  digest: string;
  /** Offset of the frame (what the index records), its header ENTRY_HEADER bytes before. */
  offset: number;
  length: number;
}

/**
 * The entries of a pack, in order, by their headers alone (frames unchecked:
 * readers verify by hash). Stops at the first header that is not one (a torn
 * tail left by a crash); `end` is where the valid entries end.
 */
export function scanPack(file: string): { entries: ScannedEntry[]; end: number; size: number } {
  const fd = fsSync.openSync(file, 'r');
  try {
    const size = fsSync.fstatSync(fd).size;
    const head = Buffer.alloc(ENTRY_HEADER);
    const entries: ScannedEntry[] = [];
    let at = 0;
    while (at + ENTRY_HEADER <= size) {
      if (fsSync.readSync(fd, head, 0, ENTRY_HEADER, at) !== ENTRY_HEADER) break;
      const h = PackEntry.parse(head);
      if (h.magic !== PACK_MAGIC || h.version !== PACK_VERSION || h.length === 0 || h.length > MAX_FRAME) break;
      if (at + ENTRY_HEADER + h.length > size) break;
      entries.push({ digest: Buffer.from(h.digest).toString('hex'), offset: at + ENTRY_HEADER, length: h.length });
      at += ENTRY_HEADER + h.length;
    }
    return { entries, end: at, size };
  } finally {
    fsSync.closeSync(fd);
  }
}
