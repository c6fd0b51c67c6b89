/**
 * Corrupt ext4 metadata: each case must end in a VmdnError E_FORMAT naming
 * what is wrong (with the inode number where there is one), never a crash or
 * a hang. Checksum mismatches alone are warnings, not errors.
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openExt4 } from '../../src/fs/ext4/ext4.js';
import { VmdnError } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { smallImage, memDisk, exercise, type SmallImage } from './ext4-fixtures.js';

const t = tmpDir('vmdn-ext4-bad-');
let img: SmallImage;
before(() => {
  img = smallImage(t.dir);
});
after(() => t.cleanup());

const formatErr = (re: RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof VmdnError, `not a VmdnError: ${String(e)}`);
  assert.equal(e.code, 'E_FORMAT', e.message);
  assert.match(e.message, re);
  return true;
};

function mutate(f: (b: Buffer) => void): Buffer {
  const b = Buffer.from(img.bytes);
  f(b);
  return b;
}

it('the pristine image reads cleanly', async () => {
  const fs = await openExt4(memDisk(img.bytes));
  await exercise(fs);
  assert.deepEqual(fs.warnings, []);
});

it('bad superblock magic and geometry', async () => {
  await assert.rejects(openExt4(memDisk(mutate((b) => b.writeUInt16LE(0x1234, 1024 + 0x38)))), formatErr(/magic/));
  await assert.rejects(openExt4(memDisk(mutate((b) => b.writeUInt32LE(0x7fffffff, 1024 + 0x4)))), formatErr(/larger than its device/));
  await assert.rejects(openExt4(memDisk(mutate((b) => b.writeUInt32LE(0, 1024 + 0x28)))), formatErr(/inodes_per_group/));
});

it('bad extent header magic, depth and entry counts', async () => {
  const frag = img.inodeAt('/a/frag');
  for (const [off, v, re] of [[0, 0xbeef, /magic/], [6, 9, /depth 9/], [2, 5, /entries 5/]] as const) {
    const fs = await openExt4(memDisk(mutate((b) => b.writeUInt16LE(v, frag + 0x28 + off))));
    await assert.rejects(fs.lookup('/a/frag').then((n) => fs.fileExtents(n)), formatErr(new RegExp(`inode \\d+.*${re.source}`)));
  }
});

it('an extent index pointing to its own block is a loop, not a hang', async () => {
  const frag = img.inodeAt('/a/frag');
  const etb = img.fragEtb * img.bs;
  const fs = await openExt4(memDisk(mutate((b) => {
    b.writeUInt16LE(2, frag + 0x28 + 6); // root now claims depth 2
    b.writeUInt16LE(1, etb + 2); // the index block: one entry, depth 1, pointing to itself
    b.writeUInt16LE(1, etb + 6);
    b.writeUInt32LE(0, etb + 12);
    b.writeUInt32LE(img.fragEtb, etb + 16);
    b.writeUInt16LE(0, etb + 20);
  })));
  await assert.rejects(fs.lookup('/a/frag').then((n) => fs.fileExtents(n)), formatErr(/loop/));
});

it('a directory entry pointing to an ancestor ends the walk with E_FORMAT', async () => {
  const blk = img.dirABlock * img.bs;
  // The third entry of /a (after '.' and '..') becomes a directory entry for the root.
  const fs = await openExt4(memDisk(mutate((b) => {
    const third = 12 + 12;
    b.writeUInt32LE(2, blk + third);
    b.writeUInt8(2, blk + third + 7);
  })));
  await assert.rejects(exercise(fs), formatErr(/directory loop/));
  assert.ok(fs.warnings.some((w) => /directory block .* checksum mismatch/.test(w)), 'the edit is also a checksum mismatch');
});

it('directory entries: inode out of range, bad rec_len, name_len past rec_len', async () => {
  const blk = img.dirABlock * img.bs;
  const cases: Array<[(b: Buffer) => void, RegExp]> = [
    [(b) => b.writeUInt32LE(0xfffffff0, blk + 24), /inode \d+: .*inodes_count/],
    [(b) => b.writeUInt16LE(3, blk + 24 + 4), /bad rec_len 3/],
    [(b) => b.writeUInt16LE(4096, blk + 24 + 4), /bad rec_len 4096/],
    [(b) => b.writeUInt8(200, blk + 24 + 6), /name_len 200/],
  ];
  for (const [f, re] of cases) {
    const fs = await openExt4(memDisk(mutate(f)));
    await assert.rejects(fs.lookup('/a/f'), formatErr(re));
  }
  const fs = await openExt4(memDisk(img.bytes));
  await assert.rejects(fs.stat(10 ** 6), formatErr(/out of range/));
  await assert.rejects(fs.stat(0), formatErr(/out of range/));
});

it('xattr values and names past their block', async () => {
  const x = img.xattrBlock * img.bs;
  for (const [f, re] of [
    [(b: Buffer) => b.writeUInt32LE(5000, x + 32 + 8), /value .* outside/],
    [(b: Buffer) => b.writeUInt16LE(1020, x + 32 + 2), /value .* outside/],
    [(b: Buffer) => b.writeUInt32LE(0x1234, x), /bad magic/],
  ] as const) {
    const fs = await openExt4(memDisk(mutate(f)));
    await assert.rejects(fs.lookup('/a/f').then((n) => fs.xattrs(n)), formatErr(/inode \d+/));
    await assert.rejects(fs.lookup('/a/f').then((n) => fs.xattrs(n)), formatErr(re));
  }
});

it('checksum mismatches are warnings; the data still reads', async () => {
  const f = img.inodeAt('/a/f');
  const fs = await openExt4(memDisk(mutate((b) => b.writeUInt32LE(0xdeadbeef, f + 0x70)))); // obsolete fragment field
  await exercise(fs);
  assert.ok(fs.warnings.some((w) => /inode \d+: checksum mismatch/.test(w)), fs.warnings.join('\n'));
  const sb = await openExt4(memDisk(mutate((b) => b.writeUInt8(0x55, 1024 + 0x88)))); // last-mounted path
  assert.ok(sb.warnings.some((w) => /superblock checksum/.test(w)));
});
