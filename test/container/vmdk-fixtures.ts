/**
 * Shared by the VMDK tests: a small raw disk with random data at scattered
 * offsets (written by qemu-io, plus seeded random pieces), the same disk
 * converted by qemu-img to each VMDK subformat (each in its own directory,
 * since descriptors name their extents), and a multi-extent descriptor built
 * by hand from small sparse, flat and zero extents.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeRaw, prng } from '../helpers/images.js';
import { MiB, qemuImg } from './qcow2-fixtures.js';

const exec = promisify(execFile);

export const SUBFORMATS = ['monolithicSparse', 'streamOptimized', 'monolithicFlat', 'twoGbMaxExtentSparse'] as const;
export type Subformat = (typeof SUBFORMATS)[number];

/** Not a multiple of the 64 KiB grain: the last grain is partial. */
export const SRC_SIZE = 6 * MiB + 3 * 512;

export async function qemuIoRaw(file: string, ...cmds: string[]): Promise<void> {
  await exec('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), file]);
}

/** The source disk: random pieces, qemu-io patterns, an unaligned write and data in the last sector. */
export async function makeSource(file: string, seed = 7): Promise<void> {
  writeRaw(file, SRC_SIZE, [
    { offset: 0, data: prng(seed, 100 * 1024) },
    { offset: 2 * MiB + 4096, data: prng(seed + 1, 300 * 1024 + 512) },
    { offset: 5 * MiB + 777, data: prng(seed + 2, 5000) },
  ]);
  await qemuIoRaw(file, 'write -P 0x5a 1M 64k', 'write -P 0xa5 3200k 4k', 'write -P 0x11 4M 192k', `write -P 0x77 ${SRC_SIZE - 512} 512`);
}

/** qemu-img convert `src` to `subformat` as dir/<subformat>/disk.vmdk (extent files beside it). */
export async function convertTo(src: string, dir: string, subformat: Subformat): Promise<string> {
  const d = path.join(dir, subformat);
  await fs.mkdir(d, { recursive: true });
  const out = path.join(d, 'disk.vmdk');
  await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', `subformat=${subformat}`, src, out);
  return out;
}

/**
 * A descriptor over two sparse extents (qemu-made monolithicSparse halves of
 * the first 4 MiB), optionally a 1 MiB ZERO extent (qemu skips ZERO lines, so
 * only the variant without one can be checked against qemu), and a FLAT
 * extent read from an offset inside its file. Returns the descriptor path and
 * the raw the whole disk should equal.
 */
export async function makeMultiExtent(src: string, dir: string, zero = false): Promise<{ desc: string; ref: string }> {
  await fs.mkdir(dir, { recursive: true });
  const whole = await fs.readFile(src);
  const pieceRaw = async (name: string, from: number, len: number): Promise<string> => {
    const f = path.join(dir, name);
    await fs.writeFile(f, whole.subarray(from, from + len));
    return f;
  };
  for (const [i, from] of [[1, 0], [2, 2 * MiB]] as const) {
    const r = await pieceRaw(`part${i}.raw`, from, 2 * MiB);
    await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=monolithicSparse', r, path.join(dir, `multi-s00${i}.vmdk`));
    await fs.rm(r);
  }
  // FLAT data starts 8 sectors into its file (the 4 KiB before it is junk the reader must skip).
  const flatData = whole.subarray(5 * MiB, 6 * MiB);
  await fs.writeFile(path.join(dir, 'multi-flat.vmdk'), Buffer.concat([Buffer.alloc(4096, 0xee), flatData]));
  const desc = path.join(dir, zero ? 'multi-zero.vmdk' : 'multi.vmdk');
  await fs.writeFile(desc, [
    '# Disk DescriptorFile', 'version=1', 'CID=12345678', 'parentCID=ffffffff', 'createType="twoGbMaxExtentSparse"', '',
    '# Extent description',
    'RW 4096 SPARSE "multi-s001.vmdk"', 'RW 4096 SPARSE "multi-s002.vmdk"', ...(zero ? ['RW 2048 ZERO'] : []), 'RW 2048 FLAT "multi-flat.vmdk" 8', '',
    '#DDB', 'ddb.adapterType = "ide"', '',
  ].join('\n'));
  const ref = `${desc}.ref.raw`;
  await fs.writeFile(ref, Buffer.concat([whole.subarray(0, 4 * MiB), Buffer.alloc(zero ? MiB : 0), flatData]));
  return { desc, ref };
}
