/**
 * VHDX through the CLI, checked with qemu-img: fixed, dynamic and
 * differencing input imports and exports to raw identical to what qemu reads;
 * the same disk from VHDX and raw shares all its objects; `export --format
 * vhdx` (or a .vhdx name) writes a dynamic VHDX that `qemu-img check` finds
 * clean and `qemu-img compare` identical, also for an odd size; bad input
 * exits 3 and leaves the store as it was.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vmdn, vmdnOk, sh } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';
import { writeRaw, prng } from '../helpers/images.js';
import { MiB, SIZE, qemuImg, writeRandom, makeVhdxImages, makeDifferencing, batAt, region, fixHeaders, HEADERS, type VhdxImages } from '../container/vhdx-fixtures.js';

const t = tmpDir('vmdn-vhdx-cli-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
const store = at('store');
let img: VhdxImages;

function same(a: string, fa: string, b: string, fb: string): void {
  const r = spawnSync('qemu-img', ['compare', '-f', fa, '-F', fb, a, b], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${path.basename(a)} vs ${path.basename(b)}: ${r.stdout}${r.stderr}`);
}

before(async () => {
  img = await makeVhdxImages(t.dir);
  await fs.promises.copyFile(img.dynamic, at('parent.vhdx'));
  await qemuImg('create', '-f', 'vhdx', '-o', 'block_size=1M', at('child.vhdx'), String(SIZE));
  await writeRandom(t.dir, 'vhdx', at('child.vhdx'), 9, [[2 * MiB + 4096, 4096], [4 * MiB, 70 << 10]]);
  await makeDifferencing(at('child.vhdx'), at('parent.vhdx'), '.\\parent.vhdx');
  vmdnOk(store, ['import', img.raw, '--name', 'src']);
});
after(() => t.cleanup());

describe('vmdn import/export of VHDX', () => {
  it('fixed and dynamic VHDX import, export to raw identical to the source, and share all objects with the raw import', () => {
    const chunks = vmdnOk(store, ['import', img.raw, '--name', 'src-again']).stats.chunks;
    for (const file of [img.fixed, img.dynamic]) {
      const name = path.basename(file, '.vhdx');
      const r = vmdnOk(store, ['import', file, '--name', name]);
      assert.equal(r.stats.newObjects, 0, `${name}: ${r.stats.newObjects} objects not shared with the raw import`);
      assert.equal(r.stats.chunks, chunks, name);
      vmdnOk(store, ['export', name, at(`${name}.raw`)]);
      same(at(`${name}.raw`), 'raw', file, 'vhdx');
      same(at(`${name}.raw`), 'raw', img.raw, 'raw');
    }
  });

  it('a differencing VHDX imports as its parent with its own blocks over it', () => {
    vmdnOk(store, ['import', at('child.vhdx'), '--name', 'child']);
    vmdnOk(store, ['export', 'child', at('child.raw')]);
    const raw = fs.readFileSync(at('child.raw'));
    const parent = fs.readFileSync(img.raw);
    assert.deepEqual(raw.subarray(4 * MiB, 4 * MiB + (70 << 10)), fs.readFileSync(at('rand-9-1.bin')));
    assert.deepEqual(raw.subarray(2 * MiB + 4096, 2 * MiB + 8192), fs.readFileSync(at('rand-9-0.bin')));
    assert.deepEqual(raw.subarray(0, 2 * MiB), parent.subarray(0, 2 * MiB)); // blocks 0, 1: the parent's
    assert.deepEqual(raw.subarray(5 * MiB), parent.subarray(5 * MiB));
  });

  it('export --format vhdx (and a .vhdx name) writes what qemu checks clean and finds identical; it imports back sharing all objects', () => {
    const r = vmdnOk(store, ['export', 'src', at('o.vhdx'), '--format', 'vhdx']);
    assert.equal(r.format, 'vhdx');
    sh('qemu-img', ['check', '-f', 'vhdx', at('o.vhdx')]); // throws unless clean
    same(at('o.vhdx'), 'vhdx', img.raw, 'raw');
    assert.equal(vmdnOk(store, ['import', at('o.vhdx'), '--name', 'back']).stats.newObjects, 0);
    vmdnOk(store, ['export', 'src', at('by-name.vhdx')]);
    assert.equal(fs.readFileSync(at('by-name.vhdx')).toString('latin1', 0, 8), 'vhdxfile');
    // an odd size (not a whole block, not a whole sector): rounded up to a sector, the rest reads as zeros
    writeRaw(at('odd.raw'), 5 * MiB + 4700, [{ offset: 5 * MiB, data: prng(11, 4700) }, { offset: 100, data: prng(12, 3000) }]);
    vmdnOk(store, ['import', at('odd.raw'), '--name', 'odd']);
    vmdnOk(store, ['export', 'odd', at('odd.vhdx')]);
    sh('qemu-img', ['check', '-f', 'vhdx', at('odd.vhdx')]);
    same(at('odd.vhdx'), 'vhdx', at('odd.raw'), 'raw');
  });
});

describe('bad VHDX input exits 3 and leaves the store as it was', () => {
  const edit = (name: string, fn: (b: Buffer) => Buffer | void): string => {
    const b = fs.readFileSync(img.dynamic);
    fs.writeFileSync(at(name), fn(b) ?? b);
    return at(name);
  };
  const cases: Array<[string, () => string]> = [
    ['a truncated VHDX', () => edit('cut.vhdx', (b) => b.subarray(0, b.length >> 1))],
    ['both headers with bad checksums', () => edit('hdr.vhdx', (b) => { for (const h of HEADERS) b[h + 300] ^= 1; })],
    ['a BAT entry past the end', () => edit('bateof.vhdx', (b) => void b.writeBigUInt64LE((1n << 40n) | 6n, batAt(b, 0)))],
    ['a BAT entry into the metadata region', () => edit('batmeta.vhdx', (b) => void b.writeBigUInt64LE((BigInt(region(b, 'meta').offset / MiB) << 20n) | 6n, batAt(b, 0)))],
    ['a dirty log with no valid entry', () => edit('log.vhdx', (b) => { for (const h of HEADERS) b[h + 48] = 1; fixHeaders(b); })],
    ['a differencing VHDX without its parent', () => at('orphan.vhdx')],
  ];
  let objects = 0;
  let images: string[] = [];
  before(async () => {
    await fs.promises.copyFile(at('child.vhdx'), at('orphan.vhdx'));
    await makeDifferencing(at('orphan.vhdx'), at('parent.vhdx'), 'gone.vhdx');
    objects = vmdnOk(store, ['stats']).objects;
    images = vmdnOk(store, ['images']).images.map((i: { ref: string }) => i.ref);
  });
  for (const [name, make] of cases) {
    it(name, () => {
      const r = vmdn(store, ['import', make(), '--name', 'bad']);
      assert.equal(r.status, 3, `${r.stdout}${r.stderr}`);
      assert.match(r.json?.error?.code ?? '', /^E_(FORMAT|TRUNCATED|BACKING)$/);
      assert.deepEqual(vmdnOk(store, ['images']).images.map((i: { ref: string }) => i.ref), images);
      assert.equal(vmdnOk(store, ['stats']).objects, objects, 'a failed import added objects');
    });
  }
});
