/**
 * The ext4 reader against mke2fs -d images of a generated tree, in several
 * formats (ext2/3/4, 1 KiB blocks, 128-byte inodes, inline data, 32/64-bit,
 * with/without metadata_csum). Compared with the source tree (lstat) and
 * with debugfs (nanosecond times, xattrs, inline data via rdump).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { openDisk } from '../../src/container/open.js';
import type { Disk } from '../../src/container/disk.js';
import { openExt4, type Ext4Fs } from '../../src/fs/ext4/ext4.js';
import { walkFs } from '../../src/fs/ext4/walk.js';
import type { FsNode, NodeType } from '../../src/fs/types.js';
import { VmdnError } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { makeTree, mkfs, debugfs, run, has, XATTRS, MiB } from './ext4-fixtures.js';

const t = tmpDir('vmdn-ext4-');
const tree = path.join(t.dir, 'tree');
const dec = new TextDecoder();

before(() => makeTree(tree, { bigDir: 5000, fragmented: true }));
after(() => t.cleanup());

interface HostEntry { type: NodeType; st: fs.Stats; target?: string; rel: Buffer }

function hostTree(): Map<string, HostEntry> {
  const out = new Map<string, HostEntry>();
  const walk = (dir: Buffer, rel: Buffer): void => {
    for (const n of fs.readdirSync(dir, { encoding: 'buffer' })) {
      const full = Buffer.concat([dir, Buffer.from('/'), n]);
      const r = Buffer.concat([rel, Buffer.from('/'), n]);
      const st = fs.lstatSync(full);
      const type: NodeType = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'chardev' : st.isBlockDevice() ? 'blockdev' : st.isFIFO() ? 'fifo' : 'socket';
      out.set(dec.decode(r), { type, st, rel: r, target: type === 'symlink' ? dec.decode(fs.readlinkSync(full, { encoding: 'buffer' })) : undefined });
      if (type === 'dir') walk(full, r);
    }
  };
  walk(Buffer.from(tree), Buffer.alloc(0));
  return out;
}

async function sha(fsys: Ext4Fs, n: FsNode): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const b of fsys.readFile(n)) h.update(b);
  return h.digest('hex');
}
const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.length);
const hostSha = (p: Buffer): string => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');

const VARIANTS: Array<[string, string[]]> = [
  ['ext4 default', ['-t', 'ext4']],
  ['ext4 1k blocks', ['-t', 'ext4', '-b', '1024']],
  ['ext4 128-byte inodes', ['-t', 'ext4', '-I', '128']],
  ['ext2', ['-t', 'ext2']],
  ['ext3', ['-t', 'ext3']],
  ['ext4 inline_data', ['-t', 'ext4', '-O', 'inline_data']],
  ['ext4 32-bit, no csum (uninit_bg crc16)', ['-t', 'ext4', '-O', '^64bit,^metadata_csum,uninit_bg']],
  ['ext4 64bit metadata_csum 1k', ['-t', 'ext4', '-b', '1024', '-O', '64bit,metadata_csum']],
];

for (const [name, opts] of VARIANTS) {
  describe(name, () => {
    const img = path.join(t.dir, `${name.replace(/\W+/g, '_')}.img`);
    let disk: Disk;
    let e4: Ext4Fs;
    before(async () => {
      mkfs(img, tree, 256, opts);
      // mke2fs -d keeps only seconds: give one file nanoseconds through debugfs.
      if (!opts.includes('128')) {
        run('debugfs', ['-w', '-R', 'sif /a/size-61 mtime_extra 0x1d6f3454', img]);
        run('debugfs', ['-w', '-R', 'sif /a/size-1 mtime_extra 0x1', img]);
      }
      disk = await openDisk(img);
      e4 = await openExt4(disk);
    });
    after(async () => {
      await disk?.close();
      fs.rmSync(img, { force: true });
    });

    it('walks the same tree as the source, with matching metadata and content', async () => {
      const host = hostTree();
      const seen = new Set<string>();
      const byHostIno = new Map<number, number>();
      for await (const { path: p, node } of walkFs(e4)) {
        if (p === '' || p === '/lost+found') continue;
        const h = host.get(p);
        assert.ok(h, `unexpected ${p}`);
        seen.add(p);
        assert.equal(node.type, h.type, p);
        assert.equal(node.perm, h.st.mode & 0o7777, `${p} perm`);
        assert.equal(node.uid, h.st.uid, `${p} uid`);
        assert.equal(node.gid, h.st.gid, `${p} gid`);
        // mke2fs -d stores 32-bit seconds only; the test sets epoch bits on a/size-1 with debugfs.
        if (p !== '/a/size-1') assert.equal(node.mtime.sec, Math.floor(h.st.mtimeMs / 1000), `${p} mtime`);
        if (h.type !== 'dir') assert.equal(node.nlink, h.st.nlink, `${p} nlink`);
        const ino = byHostIno.get(h.st.ino);
        if (ino === undefined) byHostIno.set(h.st.ino, node.ino);
        else assert.equal(node.ino, ino, `${p}: hard links share an inode`);
        if (h.type === 'file') {
          assert.equal(node.size, h.st.size, `${p} size`);
          if (h.st.size <= 8 * MiB) assert.equal(await sha(e4, node), hostSha(Buffer.concat([Buffer.from(tree), h.rel])), `${p} content`);
        }
        if (h.type === 'symlink') assert.equal(await e4.readlink(node), h.target, `${p} target`);
        if (h.type === 'chardev' || h.type === 'blockdev') {
          const r = h.st.rdev;
          assert.deepEqual(node.rdev, { major: ((r >> 8) & 0xfff) | Math.floor(r / 2 ** 32) & ~0xfff, minor: (r & 0xff) | ((r >> 12) & 0xfff00) }, `${p} rdev`);
        }
      }
      assert.deepEqual([...host.keys()].filter((k) => !seen.has(k)), [], 'missing from the image');
      assert.deepEqual(e4.warnings, []);
    });

    it('reads sparse and fragmented files, maps their extents, reports used ranges', async () => {
      const sparse = await e4.lookup('/sparse');
      assert.equal(await sha(e4, sparse), hostSha(Buffer.from(path.join(tree, 'sparse'))));
      const frag = await e4.lookup('fragmented');
      assert.equal(await sha(e4, frag), hostSha(Buffer.from(path.join(tree, 'fragmented'))));
      const ext = await e4.fileExtents(frag);
      assert.ok(ext.length >= 8192, `${ext.length} extents`);
      if (e4.info.type === 'ext4') {
        const depth = buf(await e4.inode(frag.ino).then((i) => i.block)).readUInt16LE(6);
        assert.ok(depth >= 2, `extent tree depth ${depth}`);
      }
      // Extents point at the file's bytes on the device.
      const hostFrag = fs.readFileSync(path.join(tree, 'fragmented'));
      for (const x of [ext[0], ext[4000], ext[ext.length - 1]]) {
        const dev = await disk.read(x.deviceOffset, x.length);
        assert.ok(buf(dev).equals(hostFrag.subarray(x.fileOffset, x.fileOffset + x.length)));
      }
      const used = await e4.usedRanges();
      let total = 0;
      for (let i = 0; i < used.length; i++) {
        assert.ok(used[i][0] < used[i][1] && (i === 0 || used[i - 1][1] < used[i][0]), 'ascending, disjoint');
        total += used[i][1] - used[i][0];
      }
      assert.equal(total, e4.info.usedBytes, 'bitmaps agree with the free block count');
      assert.ok(ext.every((x) => used.some(([s, e]) => s <= x.deviceOffset && x.deviceOffset + x.length <= e)));
    });

    it('matches debugfs for nanosecond times, xattrs and the big htree directory', async () => {
      const i128 = opts.includes('128');
      const n = await e4.lookup('/a/size-61');
      assert.deepEqual(n.mtime, { sec: Date.parse('2020-01-02T03:04:05Z') / 1000, nsec: i128 ? 0 : 0x1d6f3454 >>> 2 });
      const st = debugfs(img, 'stat /a/size-1');
      const m = /mtime: 0x([0-9a-f]+)(?::([0-9a-f]+))?/.exec(st)!;
      const n1 = await e4.lookup('/a/size-1');
      const extra = m[2] ? parseInt(m[2], 16) : 0;
      assert.deepEqual(n1.mtime, { sec: (parseInt(m[1], 16) | 0) + (extra & 3) * 2 ** 32, nsec: extra >>> 2 });
      assert.equal(n1.mtime.sec, i128 ? 4000000000 - 2 ** 32 : 4000000000, 'epoch bits extend 32-bit seconds');
      if (has('setfattr')) {
        for (const [rel, xs] of Object.entries(XATTRS)) {
          const got = await e4.xattrs(await e4.lookup(rel));
          for (const [k, v] of Object.entries(xs)) assert.equal(dec.decode(got.get(k)), v, `${rel} ${k}`);
          const list = debugfs(img, `ea_list /${rel}`);
          for (const k of Object.keys(xs)) assert.ok(list.includes(k), `debugfs lists ${k} on ${rel}`);
        }
      }
      const many = await e4.readdir(await e4.lookup('/many'));
      assert.equal(many.length, 5000);
      assert.equal(new Set(many.map((e) => e.name)).size, 5000);
      assert.ok(many.every((e) => e.type === 'file' && e.name.startsWith('entry-with-a-longish-name-')));
      const ls = debugfs(img, 'stat /many');
      if (e4.info.type !== 'ext2') assert.match(ls, /Flags: 0x[0-9a-f]*1[0-9a-f]{3}\b/, 'the big directory is hashed');
      const bad = (await e4.readdir(await e4.root())).find((e) => e.nameBytes.length === 7 && e.nameBytes[4] === 0xff)!;
      assert.deepEqual([...bad.nameBytes], [...Buffer.from('bad-'), 0xff, 0xfe, 0x41]);
    });

    it('lookup handles . and .. inside the image only; missing paths are E_NOT_FOUND', async () => {
      assert.equal((await e4.lookup('/a/b/../../a/./f1')).ino, (await e4.lookup('a/f1')).ino);
      assert.equal((await e4.lookup('/../../..')).ino, 2);
      assert.equal((await e4.lookup('/a/dotdot-link')).type, 'symlink', 'symlinks are not followed');
      await assert.rejects(e4.lookup('/a/nope'), (e: unknown) => e instanceof VmdnError && e.code === 'E_NOT_FOUND');
      await assert.rejects(e4.lookup('/a/f1/x'), (e: unknown) => e instanceof VmdnError && e.code === 'E_NOT_FOUND');
    });

    if (name.includes('inline')) {
      it('inline data agrees with debugfs rdump', async () => {
        const out = path.join(t.dir, 'rdump');
        fs.rmSync(out, { recursive: true, force: true });
        fs.mkdirSync(out);
        debugfs(img, `rdump /a ${out}`);
        let inline = 0;
        for (const e of await e4.readdir(await e4.lookup('/a'))) {
          if (e.type !== 'file') continue;
          const node = await e4.stat(e.ino);
          if ((await e4.inode(e.ino)).flags & 0x10000000) inline++;
          // debugfs 1.47 rdump writes all 60 i_block bytes of some inline files: compare up to i_size, rest zeros.
          const dumped = fs.readFileSync(path.join(out, 'a', e.name));
          assert.ok(dumped.subarray(node.size).every((b) => b === 0), e.name);
          const parts: Uint8Array[] = [];
          for await (const b of e4.readFile(node)) parts.push(b);
          const mine = Buffer.concat(parts);
          assert.ok(mine.equals(dumped.subarray(0, node.size)), e.name);
        }
        assert.ok(inline >= 3, `${inline} inline files`);
        const emptyDir = await e4.inode((await e4.lookup('/empty')).ino);
        assert.ok(emptyDir.flags & 0x10000000, 'small directories are inline');
      });
    }
  });
}
