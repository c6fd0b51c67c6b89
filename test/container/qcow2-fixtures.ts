/**
 * Shared helpers for the qcow2 reader tests: qemu-img/qemu-io wrappers, a
 * reference-content check, the extents invariants, and header lookup for
 * tests that patch images byte by byte.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Disk, Extent } from '../../src/container/disk.js';
import { qcow2Header } from '../../src/container/qcow2/layout.js';
import { VmdnError, type ErrorCode } from '../../src/errors.js';

export const MiB = 1 << 20;
const exec = promisify(execFile);

export async function qemuImg(...args: string[]): Promise<string> {
  return (await exec('qemu-img', args, { maxBuffer: 64 * MiB })).stdout;
}

/** Run qemu-io commands (e.g. 'write -P 0x55 1M 4k', 'write -z 0 64k') against a qcow2 image. */
export async function qemuIo(file: string, ...cmds: string[]): Promise<void> {
  await exec('qemu-io', ['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), file]);
}

/** The guest content of `file` according to qemu (`qemu-img convert -O raw`). */
export async function referenceRaw(file: string): Promise<Buffer> {
  const out = `${file}.ref.raw`;
  await qemuImg('convert', '-O', 'raw', file, out);
  try {
    return await fs.readFile(out);
  } finally {
    await fs.rm(out, { force: true });
  }
}

const ZEROS = Buffer.alloc(MiB);

export function isZero(buf: Uint8Array): boolean {
  for (let i = 0; i < buf.length; i += MiB) {
    const part = buf.subarray(i, Math.min(buf.length, i + MiB));
    if (Buffer.compare(part, ZEROS.subarray(0, part.length)) !== 0) return false;
  }
  return true;
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return Math.min(a.length, b.length);
}

/** Read the whole disk in `block`-sized reads and compare with `ref`. */
export async function assertSameContent(disk: Disk, ref: Buffer, block = 4 * MiB): Promise<void> {
  assert.equal(disk.virtualSize, ref.length, 'virtual size');
  for (let off = 0; off < ref.length; off += block) {
    const n = Math.min(block, ref.length - off);
    const got = await disk.read(off, n);
    assert.equal(got.length, n);
    const want = ref.subarray(off, off + n);
    if (Buffer.compare(got, want) !== 0) assert.fail(`content differs at guest offset ${off + firstDiff(got, want)}`);
  }
}

/** Extents are ordered, disjoint, merged, inside the disk; everything outside them and in 'zero' ones reads zero. */
export async function assertExtents(disk: Disk, ref: Buffer): Promise<Extent[]> {
  const list: Extent[] = [];
  for await (const e of disk.extents()) list.push(e);
  let prevEnd = 0;
  let prevKind: string | null = null;
  for (const e of list) {
    assert.ok(e.length > 0, `empty extent at ${e.offset}`);
    assert.ok(e.offset >= prevEnd, `extent at ${e.offset} overlaps or is out of order (previous ended at ${prevEnd})`);
    assert.ok(!(e.offset === prevEnd && e.kind === prevKind), `adjacent ${e.kind} extents not merged at ${e.offset}`);
    assert.ok(e.offset + e.length <= disk.virtualSize, `extent at ${e.offset} runs past the disk`);
    assert.ok(isZero(ref.subarray(prevEnd, e.offset)), `non-zero bytes in the hole ${prevEnd}..${e.offset}`);
    if (e.kind === 'zero') assert.ok(isZero(ref.subarray(e.offset, e.offset + e.length)), `zero extent at ${e.offset} is not zero`);
    prevEnd = e.offset + e.length;
    prevKind = e.kind;
  }
  assert.ok(isZero(ref.subarray(prevEnd)), `non-zero bytes after the last extent (${prevEnd})`);
  return list;
}

export interface HeaderInfo {
  clusterSize: number;
  l1Offset: number;
  l1Size: number;
  refcountOffset: number;
  headerLength: number;
  /** Host offset of the first allocated L2 table. */
  firstL2: number;
}

export function headerInfo(buf: Buffer): HeaderInfo {
  const fixed = Buffer.alloc(qcow2Header.size);
  buf.copy(fixed, 0, 0, qcow2Header.size);
  const h = qcow2Header.parse(fixed);
  const l1Offset = Number(h.l1TableOffset);
  let firstL2 = 0;
  for (let i = 0; i < h.l1Size && !firstL2; i++) firstL2 = Number(buf.readBigUInt64BE(l1Offset + i * 8) & 0x00fffffffffffe00n);
  return {
    clusterSize: 2 ** h.clusterBits, l1Offset, l1Size: h.l1Size, refcountOffset: Number(h.refcountTableOffset),
    headerLength: h.version === 3 ? h.headerLength : 72, firstL2,
  };
}

/** Copy `src` to `dst` after applying `edit` to its bytes (a Buffer that may also be resized by returning a new one). */
export async function patched(src: string, dst: string, edit: (b: Buffer, h: HeaderInfo) => Buffer | void): Promise<string> {
  const b = await fs.readFile(src);
  const out = edit(b, headerInfo(b)) ?? b;
  await fs.writeFile(dst, out);
  return dst;
}

/** Open, walk all extents and read everything; the expected failure may come from any step. */
export async function expectCode(file: string, code: ErrorCode, open: (f: string) => Promise<Disk>): Promise<void> {
  let disk: Disk | null = null;
  try {
    disk = await open(file);
    for await (const _ of disk.extents()) { /* walk */ }
    for (let off = 0; off < disk.virtualSize; off += 4 * MiB) await disk.read(off, Math.min(4 * MiB, disk.virtualSize - off));
  } catch (err) {
    if (err instanceof VmdnError && err.code === code) {
      if (process.env.VMDN_TEST_VERBOSE) console.log(`${path.basename(file)}: ${err.code}: ${err.message}`);
      return;
    }
    assert.fail(`${path.basename(file)}: expected ${code}, got ${err instanceof VmdnError ? `${err.code}: ${err.message}` : String((err as Error)?.stack ?? err)}`);
  } finally {
    await disk?.close();
  }
  assert.fail(`${path.basename(file)}: expected ${code}, but the image read fine`);
}
