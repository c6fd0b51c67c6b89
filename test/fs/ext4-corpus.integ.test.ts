/**
 * The ext4 reader on the shared corpus: partition 1 of each NAME.qcow2 (an
 * ext4 root made by mke2fs -d from NAME.tree) must match NAME.tree on the
 * host: paths, types, modes, owners, mtime seconds (mke2fs -d keeps no
 * nanoseconds), sizes, symlink targets, device numbers, xattrs (getfattr),
 * hard-link groups. Content is hashed in full for base and turn; for the
 * larger images every 25th file, to keep the whole suite within minutes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { openDisk } from '../../src/container/open.js';
import { readPartitionTable, partitionDisk } from '../../src/disk/partitions.js';
import { openExt4 } from '../../src/fs/ext4/ext4.js';
import { walkFs } from '../../src/fs/ext4/walk.js';
import type { NodeType } from '../../src/fs/types.js';
import { corpusDir, CORPUS_IMAGES } from '../helpers/corpus.js';

const { dir, reason } = corpusDir();
const FULL = new Set(['base', 'turn']);

function hostType(st: fs.Stats): NodeType {
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'chardev' : st.isBlockDevice() ? 'blockdev' : st.isFIFO() ? 'fifo' : 'socket';
}

/** All xattrs of the tree in one getfattr run: path -> name -> hex value. */
function hostXattrs(tree: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let txt = '';
  try {
    txt = execFileSync('getfattr', ['-R', '-d', '-m', '-', '-e', 'hex', '--absolute-names', '-h', tree], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
  } catch (e) {
    txt = (e as { stdout?: string }).stdout ?? '';
  }
  let cur: Map<string, string> | undefined;
  for (const line of txt.split('\n')) {
    if (line.startsWith('# file: ')) out.set(line.slice(8 + tree.length), (cur = new Map()));
    else if (cur && line.includes('=')) {
      const i = line.indexOf('=');
      cur.set(line.slice(0, i), line.slice(i + 3)); // drop '0x'
    }
  }
  return out;
}

/**
 * SHA-256 of a host file through one reused buffer: a read stream per file
 * (4 MiB highWaterMark) allocated 4 MiB for each of ~13,000 small files, and
 * the garbage collector then took a third of this test's time.
 */
const HASH_BUF = Buffer.allocUnsafe(4 << 20);
function hostSha256(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    for (let n; (n = fs.readSync(fd, HASH_BUF, 0, HASH_BUF.length, null)) > 0; ) h.update(HASH_BUF.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

const hasGetfattr = (() => {
  try {
    execFileSync('getfattr', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('ext4 reader on the shared corpus', { skip: reason }, () => {
  for (const name of CORPUS_IMAGES) {
    it(`${name}: partition 1 matches ${name}.tree`, { timeout: 300_000 }, async () => {
      const tree = path.join(dir!, `${name}.tree`);
      const disk = await openDisk(path.join(dir!, `${name}.qcow2`));
      try {
        const pt = await readPartitionTable(disk);
        const p1 = pt.partitions.find((p) => p.index === 1)!;
        assert.equal(p1.start, 262144);
        const e4 = await openExt4(partitionDisk(disk, p1));
        assert.equal(e4.info.label, 'root');
        const xattrs = hasGetfattr ? hostXattrs(tree) : undefined;
        const seen = new Set<string>();
        const inoOf = new Map<number, number>();
        let hashed = 0;
        let files = 0;
        for await (const { path: p, node } of walkFs(e4)) {
          if (p === '' || p === '/lost+found') continue;
          seen.add(p);
          const full = tree + p;
          const st = fs.lstatSync(full);
          const type = hostType(st);
          assert.equal(node.type, type, p);
          assert.equal(node.perm, st.mode & 0o7777, `${p} perm`);
          assert.equal(node.uid, st.uid, `${p} uid`);
          assert.equal(node.gid, st.gid, `${p} gid`);
          assert.equal(node.mtime.sec, Math.floor(st.mtimeMs / 1000), `${p} mtime`);
          if (type !== 'dir') {
            assert.equal(node.nlink, st.nlink, `${p} nlink`);
            const prev = inoOf.get(st.ino);
            if (prev === undefined) inoOf.set(st.ino, node.ino);
            else assert.equal(node.ino, prev, `${p}: hard-link group`);
          }
          if (type === 'symlink') assert.equal(await e4.readlink(node), fs.readlinkSync(full), `${p} target`);
          if (type === 'chardev' || type === 'blockdev') assert.deepEqual(node.rdev, { major: (st.rdev >> 8) & 0xfff, minor: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00) }, p);
          if (xattrs) {
            const want = xattrs.get(p) ?? new Map();
            const got = await e4.xattrs(node);
            assert.deepEqual(new Map([...got].map(([k, v]) => [k, Buffer.from(v).toString('hex')])), want, `${p} xattrs`);
          }
          if (type === 'file') {
            assert.equal(node.size, st.size, `${p} size`);
            if (FULL.has(name) || files++ % 25 === 0) {
              const h = crypto.createHash('sha256');
              for await (const b of e4.readFile(node)) h.update(b);
              assert.equal(h.digest('hex'), hostSha256(full), `${p} content`);
              hashed++;
            }
          }
        }
        // Everything on the host made it into the image.
        const missing: string[] = [];
        const walk = (rel: string): void => {
          for (const n of fs.readdirSync(tree + rel)) {
            const r = `${rel}/${n}`;
            if (!seen.has(r)) missing.push(r);
            else if (fs.lstatSync(tree + r).isDirectory()) walk(r);
          }
        };
        walk('');
        assert.deepEqual(missing, []);
        assert.deepEqual(e4.warnings, []);
        console.log(`${name}: ${seen.size} paths, ${hashed} files hashed`);
      } finally {
        await disk.close();
      }
    });
  }
});
