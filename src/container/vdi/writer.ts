/**
 * Dynamic VDI writer: banner and header, the block map, then 1 MiB blocks
 * appended in guest order (all-zero blocks stay unallocated). The header and
 * block map precede the data, so the file is finished in place at the end
 * (no streaming to a pipe).
 */
import { randomBytes } from 'node:crypto';
import type { DiskWriter } from '../disk.js';
import { VmdnError } from '../../errors.js';
import { createBlockWriter } from '../block-writer.js';
import { checkVirtualSize, type TempFile } from '../writer-file.js';
import {
  vdiHeader, HEADER_BYTES, VDI_SIGNATURE, VDI_VERSION_1_1, VDI_HEADER_SIZE_1_1, IMAGE_TYPE, SECTOR, DEFAULT_BLOCK_SIZE,
  MAX_VIRTUAL_SIZE, BMAP_UNALLOCATED, BANNER,
} from './layout.js';

export async function createVdiWriter(outPath: string, virtualSize: number): Promise<DiskWriter> {
  checkVirtualSize(virtualSize, Number.MAX_SAFE_INTEGER);
  if (virtualSize > MAX_VIRTUAL_SIZE) throw new VmdnError('E_USAGE', `a VDI written by vmdn holds at most ${MAX_VIRTUAL_SIZE} bytes; this disk has ${virtualSize}`, { virtualSize });
  const size = Math.ceil(virtualSize / SECTOR) * SECTOR;
  const bs = DEFAULT_BLOCK_SIZE;
  const blocks = Math.ceil(size / bs);
  const offsetBmap = HEADER_BYTES;
  const offsetData = offsetBmap + Math.ceil((blocks * 4) / SECTOR) * SECTOR;
  return createBlockWriter(outPath, virtualSize, {
    blockSize: bs,
    dataStart: offsetData,
    prefix: new Uint8Array(0),
    async finish(file: TempFile, map: Float64Array, end: number): Promise<void> {
      const bmap = Buffer.alloc(offsetData - offsetBmap);
      let allocated = 0;
      for (let i = 0; i < blocks; i++) {
        bmap.writeUInt32LE(map[i] < 0 ? BMAP_UNALLOCATED : (map[i] - offsetData) / bs, i * 4);
        if (map[i] >= 0) allocated++;
      }
      const text = new Uint8Array(64);
      text.set(Buffer.from(BANNER, 'latin1'));
      const header = vdiHeader.write({
        text, signature: VDI_SIGNATURE, version: VDI_VERSION_1_1, headerSize: VDI_HEADER_SIZE_1_1, imageType: IMAGE_TYPE.DYNAMIC,
        imageFlags: 0, offsetBmap, offsetData, cylinders: 0, heads: 0, sectors: 0, sectorSize: SECTOR, diskSize: BigInt(size),
        blockSize: bs, blockExtra: 0, blocksInImage: blocks, blocksAllocated: allocated,
        uuidImage: randomBytes(16), uuidLastSnap: randomBytes(16), uuidLink: new Uint8Array(16), uuidParent: new Uint8Array(16),
      });
      // Zero runs at the end of the last block were skipped: the file must still hold it whole.
      await file.fh.truncate(end);
      await file.writeAt(bmap, 0, bmap.length, offsetBmap);
      await file.writeAt(header, 0, header.length, 0);
    },
  });
}
