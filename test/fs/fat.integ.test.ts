/**
 * FAT12/16/32 images made with mkfs.vfat and populated with mtools (long and
 * unicode names, nested and empty dirs, empty files, a fragmented file over
 * many clusters, deleted entries). Our listing must equal `mdir -/ -a`, and
 * our contents what `mcopy -s` extracts. Then the corpus EFI partition.
 */
import { it, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { openDisk } from '../../src/container/open.js';
import { openFat } from '../../src/fs/fat/fat.js';
import { probeFilesystem } from '../../src/fs/probe.js';
import { fatTime, lfnChecksum } from '../../src/fs/fat/dir.js';
import { readPartitionTable, partitionDisk } from '../../src/disk/partitions.js';
import type { FileSystem } from '../../src/fs/types.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';
import { walkTree, type TreeEntry } from '../helpers/fstree.js';
import { mtool, mdirTree } from '../helpers/mtools.js';
import { corpusDir } from '../helpers/corpus.js';

const t = tmpDir('vmdn-fat-');
after(() => t.cleanup());
const at = (...n: string[]): string => path.join(t.dir, ...n);

/** A host tree to copy in: covers the naming and layout cases. */
function makeSource(root: string, bigSize: number): void {
  const w = (p: string, data: string | Buffer): void => {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), data);
  };
  w('README.TXT', 'upper-case 8.3 name\n');
  w('lower.txt', 'lower-case 8.3 name (NT case flags)\n');
  w('A rather long file name with spaces.text', 'lfn\n');
  w('café ünïcode ☃ 日本.txt', 'unicode lfn\n');
  w('empty', '');
  w('to be deleted, with a long name.txt', 'gone\n');
  w('nested/deeper/deepest/Mixed.Case.Name', 'deep\n');
  w('nested/deeper/x'.padEnd(200, 'y'), 'a 186-character name\n');
  fs.mkdirSync(path.join(root, 'empty dir'), { recursive: true });
  for (let i = 0; i < 40; i++) w(`many/file-${String(i).padStart(3, '0')}.dat`, prng(i + 1, 1000 + i * 37));
  w('later/big.bin', prng(99, bigSize));
}

function buildImage(img: string, fat: 12 | 16 | 32, kib: number, bigSize: number): string {
  const src = at(`src${fat}`);
  makeSource(src, bigSize);
  execFileSync('mkfs.vfat', ['-F', String(fat), '-n', `T${fat}`, '-i', '0BADF00D', ...(fat === 32 ? ['-s', '1'] : []), '-C', img, String(kib)], { stdio: 'ignore' });
  const entries = fs.readdirSync(src).filter((n) => n !== 'later').map((n) => path.join(src, n));
  mtool('mcopy', ['-s', '-i', img, ...entries, '::']);
  // Deleted entries, and holes in the FAT so the big file is written fragmented.
  mtool('mdel', ['-i', img, ...Array.from({ length: 20 }, (_, i) => `::many/file-${String(i * 2).padStart(3, '0')}.dat`)]);
  mtool('mdel', ['-i', img, '::to be deleted, with a long name.txt']);
  if (fat === 32) {
    // mtools allocates from FSInfo's next-free hint; clearing it makes it reuse the holes.
    const fd = fs.openSync(img, 'r+');
    fs.writeSync(fd, Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, 512 + 492);
    fs.closeSync(fd);
  }
  mtool('mcopy', ['-s', '-i', img, path.join(src, 'later'), '::']);
  return img;
}

function hostTree(root: string): Map<string, TreeEntry> {
  const out = new Map<string, TreeEntry>();
  const visit = (dir: string, prefix: string): void => {
    for (const n of fs.readdirSync(dir)) {
      const p = path.join(dir, n), st = fs.statSync(p);
      if (st.isDirectory()) { out.set(`${prefix}/${n}`, { type: 'dir', size: 0 }); visit(p, `${prefix}/${n}`); }
      else out.set(`${prefix}/${n}`, { type: 'file', size: st.size, sha256: crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex') });
    }
  };
  visit(root, '');
  return out;
}

const sorted = <V>(m: Map<string, V>): Array<[string, V]> => [...m].sort(([a], [b]) => (a < b ? -1 : 1));

async function withFat<T>(img: string, fn: (fs: FileSystem) => Promise<T>): Promise<T> {
  const d = await openDisk(img);
  try {
    return await fn(await openFat(d));
  } finally {
    await d.close();
  }
}

/** Our tree equals mdir's names, types, sizes and minute-resolution mtimes. */
async function assertEqualsMdir(fsys: FileSystem, image: string): Promise<Map<string, TreeEntry>> {
  const ours = await walkTree(fsys, { hash: true });
  const mdir = mdirTree(image);
  assert.deepEqual(sorted(ours).map(([p, e]) => [p, e.type, e.size]), sorted(mdir).map(([p, e]) => [p, e.type, e.size]));
  for (const [p] of ours) {
    const node = await fsys.lookup(p);
    const when = new Date(node.mtime.sec * 1000).toISOString().replace('T', ' ').slice(0, 16);
    assert.equal(when, mdir.get(p)!.when, p);
  }
  return ours;
}

for (const [fat, kib, big] of [[12, 2048, 700_000], [16, 32 * 1024, 3_000_000], [32, 48 * 1024, 5_000_000]] as const) {
  it(`FAT${fat}: listing equals mdir -/, contents equal mcopy -s`, async () => {
    const img = buildImage(at(`fat${fat}.img`), fat, kib, big);
    const out = at(`out${fat}`);
    fs.mkdirSync(out);
    mtool('mcopy', ['-s', '-n', '-i', img, '::*', out]);
    await withFat(img, async (fsys) => {
      assert.equal(fsys.info.type, 'vfat');
      assert.equal(fsys.info.details.fatType, fat);
      assert.equal(fsys.info.label, `T${fat}`);
      assert.equal(fsys.info.uuid, '0BAD-F00D');
      const ours = await assertEqualsMdir(fsys, img);
      assert.deepEqual(sorted(ours), sorted(hostTree(out)));
      assert.ok(ours.has('/café ünïcode ☃ 日本.txt') && ours.has('/lower.txt') && !ours.has('/many/file-000.dat'));
      // The big file really is fragmented over many clusters.
      const bigNode = await fsys.lookup('/LATER/BIG.BIN');
      const ext = await fsys.fileExtents(bigNode);
      assert.ok(ext.length > 1, `expected fragmentation, got ${ext.length} extent(s)`);
      assert.equal(ext.reduce((n, e) => n + e.length, 0), big);
      const used = await fsys.usedRanges();
      for (const e of ext) assert.ok(used.some(([s, u]) => s <= e.deviceOffset && e.deviceOffset + e.length <= u));
      assert.deepEqual(fsys.warnings, []);
    });
    const d = await openDisk(img);
    assert.equal((await probeFilesystem(d)).kind, 'vfat');
    await d.close();
  });
}

it('DOS time decoding and the LFN checksum', () => {
  // 2023-11-14 22:13:20 -> date (43<<9)|(11<<5)|14, time (22<<11)|(13<<5)|10
  assert.deepEqual(fatTime((43 << 9) | (11 << 5) | 14, (22 << 11) | (13 << 5) | 10, 150), { sec: 1700000001, nsec: 500_000_000 });
  assert.deepEqual(fatTime(0, 0), { sec: 0, nsec: 0 });
  assert.equal(lfnChecksum(Buffer.from('ALONGF~1TEX')), 125); // the spec's rotate-and-add, computed independently
});

it('probe: ext2/3/4 by features, swap, XFS and btrfs magic, unknown', async () => {
  fs.writeFileSync(at('swap.img'), Buffer.alloc(1 << 20));
  execFileSync('mkswap', [at('swap.img')], { stdio: 'ignore' });
  fs.writeFileSync(at('zero.img'), Buffer.alloc(1 << 20));
  // No mkfs.xfs / mkfs.btrfs here: their superblock magics placed by hand.
  const xfs = Buffer.alloc(1 << 20); xfs.write('XFSB', 0); fs.writeFileSync(at('xfs.img'), xfs);
  const btrfs = Buffer.alloc(1 << 20); btrfs.write('_BHRfS_M', 65536 + 64); fs.writeFileSync(at('btrfs.img'), btrfs);
  for (const k of ['ext2', 'ext3', 'ext4']) execFileSync(`mkfs.${k}`, ['-q', at(`${k}.img`), '8M'], { stdio: 'ignore' });
  for (const [f, kind] of [['swap.img', 'swap'], ['zero.img', 'unknown'], ['xfs.img', 'xfs'], ['btrfs.img', 'btrfs'],
    ['ext2.img', 'ext2'], ['ext3.img', 'ext3'], ['ext4.img', 'ext4']] as const) {
    const d = await openDisk(at(f));
    const r = await probeFilesystem(d);
    assert.equal(r.kind, kind, f);
    if (!kind.startsWith('ext')) assert.equal(r.fs, undefined);
    await d.close();
  }
});

it('corpus EFI partition (partition 3) equals mdir -/ of the same partition', async (ctx) => {
  const c = corpusDir();
  if (!c.dir) { console.log(`skipped: ${c.reason}`); ctx.skip(c.reason); return; }
  for (const name of ['base.raw', 'base.qcow2']) {
    const d = await openDisk(path.join(c.dir, name));
    const p = (await readPartitionTable(d)).partitions.find((x) => x.index === 3)!;
    const r = await probeFilesystem(partitionDisk(d, p));
    assert.equal(r.kind, 'vfat');
    const ours = await assertEqualsMdir(r.fs!, `${path.join(c.dir, 'base.raw')}@@${p.offset}`);
    assert.ok(ours.has('/EFI/debian/cmdline.txt'));
    let text = '';
    for await (const b of r.fs!.readFile(await r.fs!.lookup('/EFI/debian/cmdline.txt'))) text += Buffer.from(b).toString();
    assert.equal(text, 'root=LABEL=root console=ttyS0\n');
    await d.close();
  }
});
