/**
 * A VMDK image as one Disk: a sparse file (monolithicSparse,
 * streamOptimized: the file is its only extent, its embedded descriptor is
 * not needed, as in qemu), or a descriptor file whose extents (sparse, flat,
 * zero) are laid end to end. Extent files are opened only from the
 * descriptor's own directory: a name with a directory part is refused by the
 * parser, and a symlink resolving elsewhere is refused here, before opening.
 */
import fs from 'node:fs/promises';
import nodePath from 'node:path';
import type { Disk, Extent } from '../disk.js';
import { VmdnError } from '../../errors.js';
import { openImageFile } from '../image-file.js';
import { RawDisk, RAW_BLOCK } from '../raw.js';
import { DiskSlice } from '../slice.js';
import { SECTOR, VMDK_MAGIC, MAX_DESCRIPTOR_BYTES } from './layout.js';
import { SparseExtent } from './sparse.js';
import { parseDescriptor, isDescriptor, type ExtentLine } from './descriptor.js';
import { readExact } from './io.js';
import { ExtentMerger, checkRead } from '../io.js';

interface Part {
  readonly start: number;
  readonly length: number;
  /** null: a ZERO extent. */
  readonly disk: Disk | null;
}

export class VmdkDisk implements Disk {
  readonly format = 'vmdk';
  readonly virtualSize: number;
  readonly clusterSize: number;

  private constructor(
    readonly path: string,
    private readonly parts: readonly Part[],
    /** What close() releases: file handles and the disks that own them. */
    private readonly owned: readonly (() => Promise<void>)[],
  ) {
    const last = parts[parts.length - 1];
    this.virtualSize = last ? last.start + last.length : 0;
    this.clusterSize = parts.find((p) => p.disk instanceof SparseExtent)?.disk?.clusterSize ?? RAW_BLOCK;
  }

  static async open(path: string): Promise<VmdkDisk> {
    const owned: (() => Promise<void>)[] = [];
    const closeAll = async (): Promise<void> => {
      for (const c of owned.reverse()) await c().catch(() => {});
    };
    try {
      const { fh, size } = await openImageFile(path);
      owned.push(() => fh.close());
      const head = await readExact(fh, path, 0, Math.min(size, SECTOR));
      if (head.length >= 4 && head.readUInt32LE(0) === VMDK_MAGIC) {
        const ext = await SparseExtent.open(fh, path, size);
        return new VmdkDisk(path, [{ start: 0, length: ext.virtualSize, disk: ext }], owned);
      }
      if (!isDescriptor(head)) throw new VmdnError('E_FORMAT', `${path}: not a VMDK image (no sparse header magic, no descriptor)`, { path });
      if (size > MAX_DESCRIPTOR_BYTES) throw new VmdnError('E_FORMAT', `${path}: descriptor file of ${size} bytes is too large`, { path });
      const desc = parseDescriptor(await readExact(fh, path, 0, size), path);
      const parts: Part[] = [];
      let start = 0;
      for (const e of desc.extents) {
        const length = e.sectors * SECTOR;
        parts.push({ start, length, disk: e.type === 'ZERO' ? null : await openExtent(path, e, owned) });
        start += length;
      }
      return new VmdkDisk(path, parts, owned);
    } catch (err) {
      await closeAll();
      throw err;
    }
  }

  async *extents(signal?: AbortSignal): AsyncIterable<Extent> {
    const m = new ExtentMerger();
    for (const p of this.parts) {
      if (!p.disk) continue;
      for await (const e of p.disk.extents(signal)) {
        // a sparse extent may hold more than the descriptor gives it: clip
        if (e.offset >= p.length) break;
        m.add(p.start + e.offset, Math.min(e.offset + e.length, p.length) - e.offset, e.kind);
        yield* m.done.splice(0);
      }
    }
    m.finish();
    yield* m.done;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRead(offset, length, this.virtualSize, this.path);
    const only = this.parts.length === 1 ? this.parts[0].disk : null;
    if (only) return only.read(offset, length);
    const out = Buffer.alloc(length);
    for (const p of this.parts) {
      const s = Math.max(offset, p.start);
      const e = Math.min(offset + length, p.start + p.length);
      if (e <= s || !p.disk) continue;
      out.set(await p.disk.read(s - p.start, e - s), s - offset);
    }
    return out;
  }

  async close(): Promise<void> {
    for (const c of [...this.owned].reverse()) await c();
  }
}

/** Open one extent named by the descriptor at `descPath`, registering what must be closed in `owned`. */
async function openExtent(descPath: string, e: ExtentLine, owned: (() => Promise<void>)[]): Promise<Disk> {
  const file = await extentPath(descPath, e.file!);
  const where = { path: descPath, extent: e.file };
  if (e.type === 'FLAT') {
    const raw = await RawDisk.open(file);
    owned.push(() => raw.close());
    const start = e.offset * SECTOR;
    if (start + e.sectors * SECTOR > raw.virtualSize) {
      throw new VmdnError('E_TRUNCATED', `${descPath}: flat extent ${e.file} (${raw.virtualSize} bytes) is shorter than its ${e.sectors} sectors at sector ${e.offset}`, where);
    }
    return new DiskSlice(raw, start, e.sectors * SECTOR);
  }
  const { fh, size } = await openImageFile(file);
  owned.push(() => fh.close());
  const head = await readExact(fh, file, 0, Math.min(size, 4));
  if (head.length < 4 || head.readUInt32LE(0) !== VMDK_MAGIC) {
    throw new VmdnError('E_FORMAT', `${descPath}: sparse extent ${e.file} has no VMDK sparse header`, where);
  }
  const ext = await SparseExtent.open(fh, file, size);
  if (ext.virtualSize < e.sectors * SECTOR) {
    throw new VmdnError('E_FORMAT', `${descPath}: sparse extent ${e.file} holds ${ext.header.capacity} sectors, the descriptor says ${e.sectors}`, where);
  }
  return ext;
}

/**
 * The real path of extent `name` beside the descriptor. A symlink is followed
 * only if it stays in the same directory; the result must be a regular file.
 */
async function extentPath(descPath: string, name: string): Promise<string> {
  const dir = nodePath.dirname(descPath);
  const where = { path: descPath, extent: name };
  let real: string;
  try {
    real = await fs.realpath(nodePath.join(dir, name));
  } catch (err) {
    throw new VmdnError('E_FORMAT', `${descPath}: extent file ${name} cannot be found beside the descriptor (${(err as NodeJS.ErrnoException).code ?? err})`, where, { cause: err });
  }
  const ownDir = await fs.realpath(dir);
  if (nodePath.dirname(real) !== ownDir) {
    throw new VmdnError('E_FORMAT', `${descPath}: extent file ${name} resolves to ${real}, outside the descriptor's directory; refused`, { ...where, real });
  }
  const st = await fs.stat(real);
  if (!st.isFile()) throw new VmdnError('E_FORMAT', `${descPath}: extent ${name} is not a regular file`, where);
  return real;
}
