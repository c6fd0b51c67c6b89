/**
 * qcow2 reader against real qemu-img: every image variant is read in full and
 * compared byte for byte with `qemu-img convert -O raw` of the same image,
 * and its extents are checked to cover every non-zero byte.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { openDisk, probeFormat } from '../../src/container/open.js';
import { Qcow2Disk } from '../../src/container/qcow2/reader.js';
import { EXT } from '../../src/container/qcow2/layout.js';
import { sampleDisk, prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { MiB, qemuImg, qemuIo, referenceRaw, assertSameContent, assertExtents, patched } from './qcow2-fixtures.js';

interface Fixture {
  file: string;
  ref: Buffer;
  /** Expected features, checked on the opened disk. */
  check?: (d: Qcow2Disk) => void;
  /** Backing files outside the image's own directory, trusted explicitly. */
  allowBacking?: string[];
}

const t = tmpDir('vmdn-qcow2-');
const fixtures = new Map<string, Fixture>();
const at = (...p: string[]): string => path.join(t.dir, ...p);

async function add(name: string, file: string, check?: Fixture['check']): Promise<void> {
  fixtures.set(name, { file, ref: await referenceRaw(file), check });
}

before(async () => {
  const src = at('src.raw');
  sampleDisk(src, 7); // 64 MiB + 4608: the last cluster is partial
  const convert = async (name: string, ...opts: string[]): Promise<string> => {
    await qemuImg('convert', '-O', 'qcow2', ...opts, src, at(name));
    return at(name);
  };
  await add('v3', await convert('v3.qcow2'), (d) => assert.equal(d.header.version, 3));
  await add('v2 (compat=0.10)', await convert('v2.qcow2', '-o', 'compat=0.10'), (d) => assert.equal(d.header.version, 2));
  await add('deflate-compressed', await convert('zlib.qcow2', '-c'), (d) => assert.equal(d.header.compression, 'deflate'));
  await add('zstd-compressed', await convert('zstd.qcow2', '-c', '-o', 'compression_type=zstd'), (d) => assert.equal(d.header.compression, 'zstd'));
  await add('512-byte clusters', await convert('c512.qcow2', '-o', 'cluster_size=512'), (d) => assert.equal(d.clusterSize, 512));
  await add('2 MiB compressed clusters', await convert('c2m.qcow2', '-c', '-o', 'cluster_size=2M'));

  // Internal snapshot: the active L1 shares L2 tables and clusters with the snapshot's until written.
  const snap = await convert('snap.qcow2');
  await qemuImg('snapshot', '-c', 'before', snap);
  await qemuIo(snap, 'write -P 0x66 3M 100k', 'write -z 40M 1M', 'discard 10M 64k');
  await add('internal snapshot, then writes', snap);
  await qemuImg('create', '-f', 'qcow2', '-o', 'preallocation=metadata', at('prealloc.qcow2'), '32M');
  await qemuIo(at('prealloc.qcow2'), 'write -P 0x12 5M 3k');
  await add('preallocation=metadata', at('prealloc.qcow2'));

  // Extended L2: partial subcluster writes in data and in holes, zero writes in both.
  const ext = await convert('extl2.qcow2', '-o', 'extended_l2=on');
  await qemuIo(ext, 'write -P 0x55 3078k 4k', 'write -P 0xaa 20482k 2k', 'write -z 41000k 16k', 'write -z 30M 4k', 'write -P 0x11 63M 70k');
  await add('extended L2', ext, (d) => assert.ok(d.header.extendedL2));

  // Extended L2 over a backing file: unallocated subclusters fall through to it.
  await qemuImg('create', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=32k', '-b', 'v3.qcow2', '-F', 'qcow2', at('extl2-top.qcow2'));
  await qemuIo(at('extl2-top.qcow2'), 'write -P 0x77 3074k 3k', 'write -z 3200k 8k', 'write -P 0x78 40M 1k', 'write -z 10M 100k');
  await add('extended L2 over backing', at('extl2-top.qcow2'));

  // Three-level chain in different directories, names relative to each image's own directory
  // (trusted explicitly: by default only files beside the image are opened as backing files):
  // chain/base/base.raw <- chain/mid/mid.qcow2 (64k clusters) <- chain/top.qcow2 (16k clusters, larger disk).
  await fs.mkdir(at('chain', 'base'), { recursive: true });
  await fs.mkdir(at('chain', 'mid'));
  sampleDisk(at('chain', 'base', 'base.raw'), 11);
  const mid = at('chain', 'mid', 'mid.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', '../base/base.raw', '-F', 'raw', mid);
  await qemuIo(mid, 'write -P 0x21 100k 300k', 'write -z 3M 512k', 'write -P 0x22 40M 1M', 'write -P 0x23 64M 4k');
  const top = at('chain', 'top.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-o', 'cluster_size=16k', '-b', 'mid/mid.qcow2', '-F', 'qcow2', top, '80M');
  await qemuIo(top, 'write -P 0x31 200k 20k', 'write -z 40M 64k', 'write -P 0x32 50M 3M', 'write -P 0x33 70M 1M', 'write -z 0 16k');
  await add('3-level backing chain (raw base, relative names)', top, (d) => {
    assert.equal(d.backing?.format, 'qcow2');
    assert.equal((d.backing as Qcow2Disk).backing?.format, 'raw');
  });
  fixtures.get('3-level backing chain (raw base, relative names)')!.allowBacking = [mid, at('chain', 'base', 'base.raw')];

  // A backing file without the format extension is probed by magic.
  const noFmt = at('nofmt.qcow2');
  await qemuImg('create', '-f', 'qcow2', '-b', 'zstd.qcow2', '-F', 'qcow2', noFmt);
  await qemuIo(noFmt, 'write -P 0x41 1M 64k');
  const ref = await referenceRaw(noFmt);
  await patched(noFmt, noFmt, (b) => {
    const i = b.indexOf(Buffer.from(EXT.BACKING_FORMAT.toString(16), 'hex'));
    assert.ok(i > 0 && i < 4096);
    b.writeUInt32BE(0x0badf00d, i); // an unknown extension, ignored by readers
  });
  fixtures.set('backing format probed', { file: noFmt, ref, check: (d) => assert.equal(d.header.backingFormat, null) });
});

after(() => t.cleanup());

describe('qcow2 reader vs qemu-img', () => {
  const names = ['v3', 'v2 (compat=0.10)', 'deflate-compressed', 'zstd-compressed', '512-byte clusters', '2 MiB compressed clusters',
    'internal snapshot, then writes', 'preallocation=metadata', 'extended L2', 'extended L2 over backing', '3-level backing chain (raw base, relative names)', 'backing format probed'];
  for (const name of names) {
    it(`${name}: content and extents`, async () => {
      const f = fixtures.get(name)!;
      assert.equal(await probeFormat(f.file), 'qcow2');
      const disk = await openDisk(f.file, { allowBacking: f.allowBacking });
      try {
        assert.ok(disk instanceof Qcow2Disk);
        f.check?.(disk);
        await assertSameContent(disk, f.ref);
        const ext = await assertExtents(disk, f.ref);
        assert.ok(ext.some((e) => e.kind === 'data'));
        if (process.env.VMDN_TEST_VERBOSE) console.log(name, ext.length, 'extents');
      } finally {
        await disk.close();
      }
    });
  }

  it('unaligned reads of every size match (chain, extended L2, compressed)', async () => {
    for (const name of ['3-level backing chain (raw base, relative names)', 'extended L2 over backing', 'zstd-compressed', 'deflate-compressed']) {
      const f = fixtures.get(name)!;
      const disk = await openDisk(f.file, { allowBacking: f.allowBacking });
      try {
        const r = prng(99, 200 * 8);
        for (let i = 0; i < 200; i++) {
          const len = i % 3 === 0 ? r.readUInt32LE(i * 8) % (5 * MiB) : r.readUInt32LE(i * 8) % 70_000;
          const off = r.readUInt32LE(i * 8 + 4) % (disk.virtualSize - len + 1);
          const got = await disk.read(off, len);
          assert.ok(Buffer.compare(got, f.ref.subarray(off, off + len)) === 0, `${name}: read ${off}+${len} differs`);
        }
        assert.equal((await disk.read(disk.virtualSize, 0)).length, 0);
      } finally {
        await disk.close();
      }
    }
  });

  it('rejects reads outside the disk', async () => {
    const disk = await openDisk(fixtures.get('v3')!.file);
    try {
      for (const [o, l] of [[disk.virtualSize - 10, 11], [-1, 5], [0, disk.virtualSize + 1], [1.5, 2]]) {
        await assert.rejects(disk.read(o, l), { name: 'VmdnError', code: 'E_USAGE' });
      }
    } finally {
      await disk.close();
    }
  });

  it('opens a raw file as raw', async () => {
    assert.equal(await probeFormat(at('src.raw')), 'raw');
    const disk = await openDisk(at('src.raw'));
    try {
      assert.equal(disk.format, 'raw');
    } finally {
      await disk.close();
    }
  });

  it('refuses other formats by name', async () => {
    // (VMDK, VHD, VHDX and VDI are read since: test/container/vmdk*.integ.test.ts, vhd.integ.test.ts, vhdx.integ.test.ts, vdi.integ.test.ts)
    for (const [fmt, name, extra] of [['qed', 'QED', []]] as const) {
      const file = at(`other-${fmt}${extra.length}.img`);
      await qemuImg('create', '-f', fmt, ...extra, file, '16M');
      await assert.rejects(openDisk(file), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'E_UNSUPPORTED');
        assert.match(e.message, new RegExp(name));
        return true;
      });
    }
  });

  it('reads a 4 MiB block quickly', async () => {
    const disk = await openDisk(fixtures.get('v3')!.file);
    try {
      const t0 = performance.now();
      for (let off = 0; off + 4 * MiB <= disk.virtualSize; off += 4 * MiB) await disk.read(off, 4 * MiB);
      const ms = performance.now() - t0;
      assert.ok(ms < 5000, `reading 64 MiB took ${ms.toFixed(0)} ms`);
    } finally {
      await disk.close();
    }
  });
});
