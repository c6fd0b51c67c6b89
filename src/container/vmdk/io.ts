/** Exact positioned reads for the VMDK reader (extent merging is in ../io.ts). */
import type fs from 'node:fs/promises';
import { VmdnError } from '../../errors.js';

/** Read exactly `length` bytes at `pos`; the file ending first is a truncated image. */
export async function readExact(fh: fs.FileHandle, path: string, pos: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, pos + done);
    if (bytesRead === 0) throw new VmdnError('E_TRUNCATED', `${path}: file ends at ${pos + done}, needed ${length} bytes at ${pos}`, { path });
    done += bytesRead;
  }
  return buf;
}
