/**
 * Packages strategy, unit level: tree lines referring to a package (`k`),
 * package records in a manifest, the .deb index object -- all come from a
 * store that may be hostile, so each is validated, and random mutations
 * only ever fail as VmdnError.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeTree, encodeTree } from '../../src/model/files-tree.js';
import { decodeDebIndex, encodeDebIndex } from '../../src/strategy/packages/ingredients.js';
import { validatePackageRef, type PackageRef } from '../../src/model/package-ref.js';
import { decodeManifest, encodeManifest, MANIFEST_KIND, type Manifest } from '../../src/model/manifest.js';
import { VmdnError } from '../../src/errors.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { fuzzCases } from '../helpers/fuzz.js';

const D = (c: string) => c.repeat(64);
const ROOT = '{"p":"","t":"d","m":493,"u":0,"g":0}';
const TIME = '[1,0,2,0,3,0]';

/** A root, a directory and one file line `file` (JSON fields after the path). */
function tree(file: string): { tree: string; times: string } {
  return { tree: `${ROOT}\n{"p":"usr","t":"d","m":493,"u":0,"g":0}\n{"p":"usr/x","t":"f","m":420,"u":0,"g":0,${file}}\n`, times: `${TIME}\n${TIME}\n${TIME}\n` };
}

const isManifestError = (e: unknown) => e instanceof VmdnError && e.code === 'E_MANIFEST';

function ref(over: Partial<Record<keyof PackageRef, unknown>> = {}): PackageRef {
  return { name: 'libfoo1', version: '1:2.3.4-5+deb12u1~bpo', arch: 'amd64', sha256: 'ab'.repeat(32), size: 70_000, tarSize: 300_000, tar: [[0, 100_000, D('1')], [100_000, 150_000, D('2')]], index: D('3'), ...over } as PackageRef;
}

const PARAMS = {
  fsType: 'ext4', uuid: '00000000-0000-4000-8000-000000000000', label: 'r', blockSize: 4096, blocksCount: 256, inodeSize: 256, inodesCount: 64,
  blocksPerGroup: 32768, flexBgSize: 16, features: ['extent'], hashSeed: '0'.repeat(32), defHashVersion: 1, reservedBlocks: 0, journalBlocks: 0,
  defaultMountOpts: 0, errors: 1, maxMountCount: -1, checkInterval: 0,
};

function manifest(): Manifest {
  return {
    kind: MANIFEST_KIND, version: 1, virtualSize: 4 << 20, source: { format: 'raw', clusterSize: 4096 }, chunker: 'cdc:8k:32k:128k', allocated: 0,
    chunks: [[0, 4096, D('a')]],
    filesystems: [{
      index: 1, offset: 1 << 20, length: 1 << 20, type: 'ext4', params: PARAMS as never, entries: 3, tree: [D('b')], times: [D('c')], streamBytes: 100, stream: [[0, 100, D('d')]],
      packages: [ref(), ref({ name: 'tzdata', version: '2024a-0+deb12u1', arch: 'all', size: 300, tarSize: 10_240, tar: [[0, 10_240, D('5')]], index: D('6') })],
    }],
  };
}

describe('packages: tree references, package records, index objects', () => {
  it('decodeTree accepts a package reference in range and refuses one out of range, empty or malformed', () => {
    const ok = tree('"s":5,"k":1');
    const r = decodeTree(ok.tree, ok.times, 0, 2);
    assert.equal(r[2]!.pkg, 1);
    assert.equal(r[2]!.size, 5);
    assert.equal(r[2]!.chunks, undefined);
    // and it encodes back to the same line
    assert.equal(encodeTree(r).tree, ok.tree);
    assert.equal(decodeTree(tree('"s":5,"k":0').tree, ok.times, 0, 1)[2]!.pkg, 0);
    for (const [why, line, packages] of [
      ['no packages at all', '"s":5,"k":0', 0],
      ['k == packages', '"s":5,"k":2', 2],
      ['k far out', '"s":5,"k":100000', 2],
      ['negative k', '"s":5,"k":-1', 2],
      ['fractional k', '"s":5,"k":0.5', 2],
      ['k as a string', '"s":5,"k":"0"', 2],
      ['k null', '"s":5,"k":null', 2],
      ['empty file from a package', '"s":0,"k":0', 2],
      ['no size', '"k":0', 2],
      ['negative size', '"s":-5,"k":0', 2],
      ['size as a string', '"s":"5","k":0', 2],
      ['huge size', `"s":${2 ** 51},"k":0`, 2],
    ] as const) {
      const b = tree(line);
      assert.throws(() => decodeTree(b.tree, b.times, 0, packages), isManifestError, why);
    }
  });

  it('a package reference takes no bytes of the small-file stream', () => {
    // a small file after the package file starts at stream offset 0
    const t = `${ROOT}\n{"p":"a","t":"f","m":420,"u":0,"g":0,"s":7,"k":0}\n{"p":"b","t":"f","m":420,"u":0,"g":0,"s":3,"z":1}\n`;
    const r = decodeTree(t, `${TIME}\n${TIME}\n${TIME}\n`, 3, 1);
    assert.equal(r[2]!.streamOffset, 0);
    assert.throws(() => decodeTree(t, `${TIME}\n${TIME}\n${TIME}\n`, 10, 1), isManifestError);
  });

  it('validatePackageRef accepts a good record and refuses each bad field', () => {
    assert.equal(validatePackageRef(ref()), undefined);
    assert.equal(validatePackageRef(ref({ tarSize: 100_000, tar: [[512, 99_000, D('1')]] })), undefined); // holes read as zero
    const cases: Array<[string, Partial<Record<keyof PackageRef, unknown>>]> = [
      ['upper-case name', { name: 'LibFoo' }],
      ['empty name', { name: '' }],
      ['name with a slash', { name: 'a/../b' }],
      ['name with a space', { name: 'a b' }],
      ['name not a string', { name: 7 }],
      ['long name', { name: 'a'.repeat(129) }],
      ['empty version', { version: '' }],
      ['version with a space', { version: '1.0 -1' }],
      ['version with a slash', { version: '1.0/../x' }],
      ['version not a string', { version: 1 }],
      ['arch upper-case', { arch: 'AMD64' }],
      ['arch empty', { arch: '' }],
      ['arch with a slash', { arch: '../x' }],
      ['short sha256', { sha256: 'ab'.repeat(31) }],
      ['upper-case sha256', { sha256: 'AB'.repeat(32) }],
      ['sha256 missing', { sha256: undefined }],
      ['size 0', { size: 0 }],
      ['negative size', { size: -1 }],
      ['fractional size', { size: 1.5 }],
      ['huge size', { size: 2 ** 35 }],
      ['size as a string', { size: '70000' }],
      ['tar size zero', { tarSize: 0 }],
      ['no tar chunks', { tar: [] }],
      ['tar chunk past the end', { tar: [[0, 300_001, D('1')]] }],
      ['tar chunks overlapping', { tar: [[0, 100_000, D('1')], [99_999, 10, D('2')]] }],
      ['tar chunks out of order', { tar: [[100_000, 10, D('2')], [0, 10, D('1')]] }],
      ['tar chunk empty', { tar: [[0, 0, D('1')]] }],
      ['tar chunk over 16 MiB', { tarSize: 2 ** 30, tar: [[0, (16 << 20) + 1, D('1')]] }],
      ['tar chunk not a digest', { tar: [[0, 10, 'x']] }],
      ['tar chunk not a triple', { tar: [[0, 10]] }],
      ['tar chunks not a list', { tar: D('1') }],
      ['index not a digest', { index: 'Z'.repeat(64) }],
      ['index missing', { index: undefined }],
    ];
    for (const [why, over] of cases) assert.equal(typeof validatePackageRef(ref(over)), 'string', why);
    for (const v of [null, undefined, 5, 'pkg', []]) assert.equal(typeof validatePackageRef(v as never), 'string', JSON.stringify(v));
  });

  it('a manifest with packages round-trips; a bad package record is refused', () => {
    const m = manifest();
    assert.deepEqual(decodeManifest(encodeManifest(m)), m);
    const enc = (x: unknown) => new TextEncoder().encode(JSON.stringify(x));
    for (const [why, mutate] of [
      ['packages not a list', (x: any) => (x.filesystems[0].packages = { 0: ref() })],
      ['null package', (x: any) => (x.filesystems[0].packages[1] = null)],
      ['bad tar chunk', (x: any) => x.filesystems[0].packages[0].tar[1][0] = 5],
      ['bad name', (x: any) => (x.filesystems[0].packages[1].name = '../etc')],
    ] as const) {
      const x = structuredClone(m);
      mutate(x);
      assert.throws(() => decodeManifest(enc(x)), isManifestError, why);
    }
  });

  it('the .deb index object round-trips and refuses bad entries', () => {
    const files = new Map([['usr/bin/x', { size: 3, sha256: 'cd'.repeat(32) }], ['etc/x.conf', { size: 0, sha256: 'ef'.repeat(32) }]]);
    assert.deepEqual(decodeDebIndex(encodeDebIndex(files)), files);
    for (const bad of ['', 'null', '5', '[]', '{"kind":"other","files":[]}', '{"kind":"vmdn.deb-index"}', '{"kind":"vmdn.deb-index","files":[["",1,"' + 'a'.repeat(64) + '"]]}',
      '{"kind":"vmdn.deb-index","files":[["x",-1,"' + 'a'.repeat(64) + '"]]}', '{"kind":"vmdn.deb-index","files":[["x",1,"nothex"]]}', '{"kind":"vmdn.deb-index","files":[7]}']) {
      assert.throws(() => decodeDebIndex(Buffer.from(bad)), isManifestError, bad);
    }
  });

  it('fuzz: mutated manifests with packages, package tree lines and index objects fail only as E_MANIFEST', () => {
    const seed = seedFrom('VMDN_FUZZ_SEED');
    const cases = fuzzCases(3000);
    const rand = mulberry32(seed);
    const pick = (n: number) => Math.floor(rand() * n);
    const JUNK = ['"', ',', ':', '[', ']', '{', '}', '0', '-1', '1e309', 'null', 'true', '"x"', '\\', '\u00e9', '\n', ' ', '9'.repeat(20)];
    const mutate = (s: string): string => {
      let b = s;
      for (let k = 1 + pick(4); k > 0; k--) {
        const i = pick(b.length + 1);
        switch (pick(4)) {
          case 0: b = b.slice(0, i) + JUNK[pick(JUNK.length)] + b.slice(i); break;
          case 1: b = b.slice(0, i) + b.slice(i + 1 + pick(8)); break;
          case 2: b = b.slice(0, i) + String.fromCharCode(pick(128)) + b.slice(i + 1); break;
          default: { const j = pick(b.length); b = b.slice(0, i) + b.slice(j, j + pick(40)) + b.slice(i); }
        }
      }
      return b;
    };
    const m = Buffer.from(encodeManifest(manifest())).toString('latin1');
    const t = tree('"s":5,"k":1');
    const idx = Buffer.from(encodeDebIndex(new Map([['usr/bin/x', { size: 3, sha256: 'cd'.repeat(32) }]]))).toString('latin1');
    let accepted = 0;
    for (let i = 0; i < cases; i++) {
      const which = i % 3;
      try {
        if (which === 0) {
          const got = decodeManifest(Buffer.from(mutate(m), 'latin1'));
          // what decodes is valid: every package record passes its own check
          for (const f of got.filesystems ?? []) for (const p of f.packages ?? []) assert.equal(validatePackageRef(p), undefined);
        } else if (which === 1) {
          const r = decodeTree(mutate(t.tree), pick(4) ? t.times : mutate(t.times), 0, 2);
          for (const x of r) if (x.pkg !== undefined) assert.ok(Number.isSafeInteger(x.pkg) && x.pkg >= 0 && x.pkg < 2 && x.size! > 0, `seed ${seed} case ${i}`);
        } else decodeDebIndex(Buffer.from(mutate(idx), 'latin1'));
        accepted++;
      } catch (e) {
        assert.ok(isManifestError(e), `seed ${seed} case ${i}: ${(e as Error).stack}`);
      }
    }
    assert.ok(accepted > 0 && accepted < cases, `seed ${seed}: ${accepted} of ${cases} mutations accepted`);
  });
});
