import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeTree, encodeTree, type TreeRecord } from '../../src/model/files-tree.js';
import { decodeManifest, MANIFEST_KIND, type Manifest } from '../../src/model/manifest.js';
import { VmdnError } from '../../src/errors.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { fuzzCases } from '../helpers/fuzz.js';

const D = (c: string) => c.repeat(64);
const T = { sec: 1700000000, nsec: 123456789 };
const times = { mtime: T, atime: { sec: -5, nsec: 1 }, ctime: { sec: 2 ** 33, nsec: 999999999 }, crtime: T };
const rec = (path: string | Buffer, type: TreeRecord['type'], extra: Partial<TreeRecord> = {}): TreeRecord => ({
  path: typeof path === 'string' ? Buffer.from(path) : path, type, perm: 0o755, uid: 0, gid: 0, times, ...extra,
});

const sample = (): TreeRecord[] => [
  rec('', 'dir'),
  rec('..foo', 'dir'),
  rec('..foo/a..b', 'file', { size: 70000, chunks: [[0, 65536, D('a')], [65536, 4464, D('b')]] }),
  rec('h', 'file', { link: 2 }),
  rec(Buffer.from([0x6e, 0xff, 0x0a]), 'symlink', { target: Buffer.from('../../../etc/passwd') }),
  rec('abs', 'symlink', { target: Buffer.from('/etc/shadow') }),
  rec('dev', 'chardev', { rdev: [1, 3] }),
  rec('x', 'fifo', { xattrs: new Map([['user.k', Buffer.from([0, 1, 2])]]) }),
  rec('small', 'file', { size: 10, streamOffset: 0 }),
  rec('small2', 'file', { size: 90, streamOffset: 10 }),
];

const rejects = (records: TreeRecord[] | { tree: string; times: string }, why: string) => {
  const e = Array.isArray(records) ? encodeTree(records) : records;
  assert.throws(() => decodeTree(e.tree, e.times, 100), (err: VmdnError) => err.code === 'E_MANIFEST', why);
};

describe('files strategy: file tree records', () => {
  it('round-trips names that are not UTF-8, hard links, devices, xattrs and times', () => {
    const e = encodeTree(sample());
    const back = decodeTree(e.tree, e.times, 100);
    assert.deepEqual(back.map((r) => ({ ...r, path: Buffer.from(r.path), target: r.target && Buffer.from(r.target) })), sample().map((r) => ({ ...r, path: Buffer.from(r.path), target: r.target && Buffer.from(r.target) })));
  });

  it('refuses paths that could climb out of the rebuild, and structures that do not hold together', () => {
    const cases: Array<[string, (r: TreeRecord[]) => void]> = [
      ['..', (r) => (r[1]!.path = Buffer.from('..'))],
      ['a/../b', (r) => (r[2]!.path = Buffer.from('..foo/../b'))],
      ['.', (r) => (r[1]!.path = Buffer.from('.'))],
      ['empty component', (r) => (r[2]!.path = Buffer.from('..foo//b'))],
      ['leading slash', (r) => (r[1]!.path = Buffer.from('/etc'))],
      ['NUL', (r) => (r[1]!.path = Buffer.from('a\0b'))],
      ['parent is a symlink', (r) => r.push(rec('abs/x', 'file', { size: 0, chunks: [] }))],
      ['parent comes later', (r) => r.splice(1, 0, rec('later/x', 'dir'))],
      ['duplicate path', (r) => r.push(rec('dev', 'fifo'))],
      ['root not a dir', (r) => (r[0]!.type = 'file')],
      ['hard link forward', (r) => (r[3]!.link = 7)],
      ['hard link to a link', (r) => r.push(rec('h2', 'file', { link: 3 }))],
      ['chunk past the size', (r) => (r[2]!.size = 1000)],
      ['overlapping chunks', (r) => (r[2]!.chunks![1]![0] = 100)],
      ['device number', (r) => (r[6]!.rdev = [1, 2 ** 21])],
      ['mode', (r) => (r[1]!.perm = 0o17777)],
      ['stream past its end', (r) => (r[9]!.size = 91)],
      ['stream not used up', (r) => (r[9]!.size = 89)],
      ['nsec', (r) => (r[1]!.times = { ...times, mtime: { sec: 1, nsec: 1e9 } })],
    ];
    for (const [why, mutate] of cases) {
      const r = sample();
      mutate(r);
      rejects(r, why);
    }
    const e = encodeTree(sample());
    rejects({ tree: e.tree, times: e.times.split('\n').slice(1).join('\n') }, 'fewer time lines');
    rejects({ tree: e.tree.trimEnd(), times: e.times }, 'no final newline');
  });

  it('fuzz: 1500 seeded byte mutations decode or throw E_MANIFEST, never anything else', () => {
    const seed = seedFrom('VMDN_FUZZ_SEED');
    const rnd = mulberry32(seed);
    const e = encodeTree(sample());
    for (let i = 0, cases = fuzzCases(1500); i < cases; i++) {
      const which = rnd() < 0.8 ? 'tree' : 'times';
      const b = Buffer.from(e[which]);
      for (let k = 1 + Math.floor(rnd() * 4); k > 0; k--) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      const m = { ...e, [which]: b.toString('latin1') };
      try {
        decodeTree(m.tree, m.times, 100);
      } catch (err) {
        assert.equal((err as VmdnError).code, 'E_MANIFEST', `seed ${seed} case ${i}: ${(err as Error).stack}`);
      }
    }
  });

  it('a manifest whose chunks overlap a rebuilt filesystem is refused', () => {
    const params = {
      fsType: 'ext4', uuid: '00000000-0000-4000-8000-000000000000', label: 'r', blockSize: 4096, blocksCount: 256, inodeSize: 256, inodesCount: 64,
      blocksPerGroup: 32768, flexBgSize: 16, features: ['extent'], hashSeed: '0'.repeat(32), defHashVersion: 1, reservedBlocks: 0, journalBlocks: 0,
      defaultMountOpts: 0, errors: 1, maxMountCount: -1, checkInterval: 0,
    };
    const m: Manifest = {
      kind: MANIFEST_KIND, version: 1, virtualSize: 4 << 20, source: { format: 'raw', clusterSize: 4096 }, chunker: 'cdc:8k:32k:128k', allocated: 0,
      chunks: [[0, 4096, D('a')]],
      filesystems: [{ index: 1, offset: 1 << 20, length: 1 << 20, type: 'ext4', params: params as never, entries: 1, tree: [D('b')], times: [D('c')], streamBytes: 100, stream: [[0, 100, D('d')]] }],
    };
    const enc = (x: unknown) => new TextEncoder().encode(JSON.stringify(x));
    assert.equal(decodeManifest(enc(m)).filesystems!.length, 1);
    for (const [why, bad] of [
      ['chunk inside', { ...m, chunks: [[(1 << 20) + 4096, 4096, D('a')]] }],
      ['past the disk', { ...m, filesystems: [{ ...m.filesystems![0]!, offset: 4 << 20 }] }],
      ['bad uuid on a command line', { ...m, filesystems: [{ ...m.filesystems![0]!, params: { ...params, uuid: '-O; rm -rf /' } }] }],
      ['label too long', { ...m, filesystems: [{ ...m.filesystems![0]!, params: { ...params, label: 'x'.repeat(17) } }] }],
      ['feature name', { ...m, filesystems: [{ ...m.filesystems![0]!, params: { ...params, features: ['extent,^has_journal'] } }] }],
      ['blocks past the partition', { ...m, filesystems: [{ ...m.filesystems![0]!, params: { ...params, blocksCount: 1000 } }] }],
    ] as const) {
      assert.throws(() => decodeManifest(enc(bad)), (e: VmdnError) => e.code === 'E_MANIFEST', why);
    }
  });
});
