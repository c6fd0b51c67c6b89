/**
 * Bad input through the CLI: a clear error with a code, a non-zero exit, and
 * the store unchanged (no image of that name, no objects added).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdn, vmdnOk, sh } from '../helpers/cli.js';
import { sampleDisk } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';

/** Patch big-endian fields of a copy of `src`. */
function patched(src: string, dst: string, edits: Array<[offset: number, bytes: 4 | 8, value: bigint]>): string {
  const b = fs.readFileSync(src);
  for (const [o, n, v] of edits) (n === 4 ? b.writeUInt32BE(Number(v), o) : b.writeBigUInt64BE(v, o));
  fs.writeFileSync(dst, b);
  return dst;
}

describe('bad input is refused and changes nothing', () => {
  let t: ReturnType<typeof tmpDir>;
  let store: string;
  let good: string;
  let objectsBefore: number;

  before(() => {
    t = tmpDir();
    store = path.join(t.dir, 'store');
    const raw = path.join(t.dir, 'src.raw');
    sampleDisk(raw, 5);
    good = path.join(t.dir, 'good.qcow2');
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, good]);
    // one good image in the store, so "unchanged" is tested against a non-empty store
    vmdnOk(store, ['import', raw, '--name', 'keep']);
    objectsBefore = vmdnOk(store, ['stats']).objects;
  });
  after(() => t.cleanup());

  const f = (n: string) => path.join(t.dir, n);
  const header = () => {
    const b = fs.readFileSync(good);
    return { l1: b.readBigUInt64BE(40), refcount: b.readBigUInt64BE(48), size: fs.statSync(good).size };
  };
  const cases: Array<[string, () => string, string[]]> = [
    ['truncated to 40 bytes', () => { fs.writeFileSync(f('t1.qcow2'), fs.readFileSync(good).subarray(0, 40)); return f('t1.qcow2'); }, ['E_TRUNCATED', 'E_FORMAT']],
    ['truncated mid-data', () => { const b = fs.readFileSync(good); fs.writeFileSync(f('t2.qcow2'), b.subarray(0, Math.floor(b.length * 0.6))); return f('t2.qcow2'); }, ['E_TRUNCATED', 'E_FORMAT']],
    ['L1 table offset past EOF', () => patched(good, f('l1eof.qcow2'), [[40, 8, BigInt(header().size) * 4n & ~0xffffn]]), ['E_FORMAT', 'E_TRUNCATED']],
    ['L1 table overlapping the header', () => patched(good, f('l1hdr.qcow2'), [[40, 8, 0n]]), ['E_FORMAT']],
    ['refcount table past EOF', () => patched(good, f('rceof.qcow2'), [[48, 8, 1n << 40n]]), ['E_FORMAT', 'E_TRUNCATED']],
    ['refcount table overlapping the header', () => patched(good, f('rchdr.qcow2'), [[48, 8, 0n]]), ['E_FORMAT']],
    ['L2 entry pointing past EOF', () => {
      const b = fs.readFileSync(good);
      const l2 = Number(b.readBigUInt64BE(Number(header().l1)) & 0x00fffffffffffe00n);
      b.writeBigUInt64BE((1n << 63n) | (1n << 45n), l2); // first guest cluster -> 32 TiB
      fs.writeFileSync(f('l2eof.qcow2'), b);
      return f('l2eof.qcow2');
    }, ['E_FORMAT', 'E_TRUNCATED']],
    ['cluster_bits 8', () => patched(good, f('cb8.qcow2'), [[20, 4, 8n]]), ['E_FORMAT', 'E_UNSUPPORTED']],
    ['cluster_bits 31', () => patched(good, f('cb31.qcow2'), [[20, 4, 31n]]), ['E_FORMAT', 'E_UNSUPPORTED']],
    ['virtual size 2^62', () => patched(good, f('huge.qcow2'), [[24, 8, 1n << 62n]]), ['E_FORMAT', 'E_UNSUPPORTED']],
    ['unknown incompatible feature', () => patched(good, f('incompat.qcow2'), [[72, 8, 1n << 40n]]), ['E_UNSUPPORTED']],
    ['encrypted', () => patched(good, f('crypt.qcow2'), [[32, 4, 1n]]), ['E_UNSUPPORTED']],
    ['backing chain that loops', () => {
      sh('qemu-img', ['create', '-f', 'qcow2', '-b', 'loop-b.qcow2', '-F', 'qcow2', '-u', f('loop-a.qcow2'), '64M']);
      sh('qemu-img', ['create', '-f', 'qcow2', '-b', 'loop-a.qcow2', '-F', 'qcow2', '-u', f('loop-b.qcow2'), '64M']);
      return f('loop-a.qcow2');
    }, ['E_BACKING']],
    ['missing backing file', () => {
      sh('qemu-img', ['create', '-f', 'qcow2', '-b', 'nowhere.qcow2', '-F', 'qcow2', '-u', f('orphan.qcow2'), '64M']);
      return f('orphan.qcow2');
    }, ['E_BACKING']],
    ['a VMDK magic over an empty header', () => { const b = Buffer.alloc(4096); b.write('KDMV', 0, 'latin1'); fs.writeFileSync(f('x.vmdk'), b); return f('x.vmdk'); }, ['E_FORMAT']],
    ['a file that does not exist', () => f('nope.qcow2'), ['E_NOT_FOUND']],
  ];

  for (const [name, make, codes] of cases) {
    it(name, () => {
      const input = make();
      const r = vmdn(store, ['import', input, '--name', 'bad']);
      assert.notEqual(r.status, 0, `import succeeded: ${r.stdout}`);
      assert.ok(r.json?.error, `no JSON error: ${r.stdout}${r.stderr}`);
      assert.ok(codes.includes(r.json.error.code), `code ${r.json.error.code}: ${r.json.error.message}`);
      assert.ok(r.json.error.message.length > 10);
      const imgs = vmdnOk(store, ['images']).images.map((i: any) => i.ref);
      assert.deepEqual(imgs, ['keep:latest']);
      assert.equal(vmdnOk(store, ['stats']).objects, objectsBefore, 'objects were added by a failed import');
    });
  }

  it('usage errors exit 2', () => {
    assert.equal(vmdn(store, ['import', good, '--name', 'Bad Name!']).status, 2);
    assert.equal(vmdn(store, ['import', good, '--name', 'x', '--chunker', 'cdc:1k:3k:2k']).status, 2);
    assert.equal(vmdn(store, ['export', 'keep', f('out.qed')]).status, 2);
    assert.equal(vmdn(store, ['frobnicate']).status, 2);
  });
});
