/**
 * VHD and VDI through the CLI, checked with qemu-img: every input subformat
 * imports and exports to raw identical to its source; every output format is
 * what qemu reads as the stored image (and `qemu-img check` clean where qemu
 * checks it: VDI; qemu has no check for vpc); the same disk in any format
 * shares all its objects; fixed VHD streams to a pipe; bad input exits 3 and
 * leaves the store as it was.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vmdn, vmdnOk, sh, CLI } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';
import { writeRaw, prng } from '../helpers/images.js';
import { MiB, makeImages, qemuImg, writeRandom, makeDifferencing, fixVhdChecksums, batOffset, type Images } from '../container/vhd-vdi-fixtures.js';

const t = tmpDir('vmdn-vhdvdi-cli-');
const at = (...p: string[]): string => path.join(t.dir, ...p);
const store = at('store');
let img: Images;

/** qemu-img compare of two images of known formats; exit 0 = identical (a larger one's extra must be zeros). */
function same(a: string, fa: string, b: string, fb: string): void {
  const r = spawnSync('qemu-img', ['compare', '-f', fa, '-F', fb, a, b], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${path.basename(a)} vs ${path.basename(b)}: ${r.stdout}${r.stderr}`);
}

before(async () => {
  img = await makeImages(t.dir);
  await fs.promises.copyFile(img.vhdDynamic, at('parent.vhd'));
  const size = JSON.parse(await qemuImg('info', '--output=json', '-f', 'vpc', at('parent.vhd')))['virtual-size'] as number;
  await qemuImg('create', '-f', 'vpc', at('child.vhd'), String(size));
  await writeRandom(t.dir, 'vpc', at('child.vhd'), 9, [[2 * MiB + 4096, 4096], [4 * MiB, 70 << 10]]);
  await makeDifferencing(at('child.vhd'), at('parent.vhd'), 'parent.vhd');
  vmdnOk(store, ['import', img.raw, '--name', 'src']);
});
after(() => t.cleanup());

describe('vmdn import/export of VHD and VDI', () => {
  it('every input subformat imports, exports to raw identical to its source, and shares all objects with the raw import', () => {
    const chunks = vmdnOk(store, ['import', img.raw, '--name', 'src-again']).stats.chunks;
    for (const [file, fmt] of [[img.vhdFixed, 'vpc'], [img.vhdDynamic, 'vpc'], [img.vdiStatic, 'vdi'], [img.vdiDynamic, 'vdi']] as const) {
      const name = path.basename(file).replace('.', '-');
      const r = vmdnOk(store, ['import', file, '--name', name]);
      assert.equal(r.stats.newObjects, 0, `${name}: ${r.stats.newObjects} objects not shared with the raw import`);
      assert.equal(r.stats.chunks, chunks, name);
      vmdnOk(store, ['export', name, at(`${name}.raw`)]);
      same(at(`${name}.raw`), 'raw', file, fmt);
      same(at(`${name}.raw`), 'raw', img.raw, 'raw');
    }
  });

  it('a differencing VHD imports as its parent with its own blocks over it', () => {
    vmdnOk(store, ['import', at('child.vhd'), '--name', 'child']);
    vmdnOk(store, ['export', 'child', at('child.raw')]);
    const raw = fs.readFileSync(at('child.raw'));
    const parent = fs.readFileSync(at('src.raw'));
    const own = fs.readFileSync(at('rand-9-1.bin'));
    assert.deepEqual(raw.subarray(4 * MiB, 4 * MiB + own.length), own);
    assert.deepEqual(raw.subarray(0, 64 << 10), parent.subarray(0, 64 << 10));
    assert.deepEqual(raw.subarray(2 * MiB + 4096, 2 * MiB + 8192), fs.readFileSync(at('rand-9-0.bin')));
    // outside the child's blocks the parent shows; inside them the child's (qemu marks a whole new block as its own: zeros over the parent's data)
    assert.deepEqual(raw.subarray(2 * MiB - 4096, 2 * MiB), parent.subarray(2 * MiB - 4096, 2 * MiB));
    assert.ok(parent.subarray(2 * MiB, 2 * MiB + 4096).some((x) => x !== 0));
    assert.ok(raw.subarray(2 * MiB, 2 * MiB + 4096).every((x) => x === 0));
  });

  it('every output format is the stored image to qemu, VDI checks clean, and imports back sharing all objects', () => {
    for (const [format, file, qfmt] of [['vhd', 'o.vhd', 'vpc'], ['vhd-fixed', 'o-fixed.vhd', 'vpc'], ['vdi', 'o.vdi', 'vdi']] as const) {
      const r = vmdnOk(store, ['export', 'src', at(file), '--format', format]);
      assert.equal(r.format, format);
      same(at(file), qfmt, img.raw, 'raw');
      if (qfmt === 'vdi') sh('qemu-img', ['check', '-f', 'vdi', at(file)]); // throws unless clean
      const back = vmdnOk(store, ['import', at(file), '--name', `back-${format}`]);
      assert.equal(back.stats.newObjects, 0, format);
    }
    // .vhd and .vdi names choose the format (dynamic VHD)
    vmdnOk(store, ['export', 'src', at('by-name.vhd')]);
    assert.equal(fs.readFileSync(at('by-name.vhd')).toString('latin1', 0, 8), 'conectix');
  });

  it('a fixed VHD is rounded up to a whole MiB (Azure), the padding reading as zeros; odd sizes in dynamic VHD and VDI', () => {
    const odd = at('odd.raw');
    writeRaw(odd, 5 * MiB + 4608, [{ offset: 5 * MiB, data: prng(11, 4608) }]);
    vmdnOk(store, ['import', odd, '--name', 'odd']);
    vmdnOk(store, ['export', 'odd', at('odd.vhd'), '--format', 'vhd-fixed']);
    assert.equal(fs.statSync(at('odd.vhd')).size, 6 * MiB + 512);
    const info = JSON.parse(sh('qemu-img', ['info', '--output=json', '-f', 'vpc', at('odd.vhd')]));
    assert.equal(info['virtual-size'], 6 * MiB);
    same(at('odd.vhd'), 'vpc', odd, 'raw');
    // dynamic VHD and VDI of a size that is no whole number of blocks: the last block is partial
    vmdnOk(store, ['export', 'odd', at('odd-dyn.vhd')]);
    same(at('odd-dyn.vhd'), 'vpc', odd, 'raw');
    vmdnOk(store, ['export', 'odd', at('odd.vdi')]);
    sh('qemu-img', ['check', '-f', 'vdi', at('odd.vdi')]);
    same(at('odd.vdi'), 'vdi', odd, 'raw');
  });

  it('raw and fixed VHD stream through a pipe as the file output; dynamic VHD and VDI are refused', () => {
    const pipe = (format: string) => spawnSync(process.execPath, [CLI, 'export', 'src', '-', '--format', format, '--store', store], { maxBuffer: 64 * MiB });
    const raw = pipe('raw');
    assert.equal(raw.status, 0, raw.stderr.toString());
    assert.ok(Buffer.compare(raw.stdout, fs.readFileSync(img.raw)) === 0, 'streamed raw differs from the source');
    const vhd = pipe('vhd-fixed');
    assert.equal(vhd.status, 0, vhd.stderr.toString());
    const file = fs.readFileSync(at('o-fixed.vhd'));
    assert.equal(vhd.stdout.length, file.length);
    // the footers differ only in their creation time, unique id and so checksum (bytes 24..28, 64..84)
    const mask = (b: Buffer): Buffer => { const c = Buffer.from(b); c.fill(0, c.length - 512 + 24, c.length - 512 + 28); c.fill(0, c.length - 512 + 64, c.length - 512 + 84); return c; };
    assert.ok(Buffer.compare(mask(vhd.stdout), mask(file)) === 0, 'streamed fixed VHD differs from the file output');
    fs.writeFileSync(at('piped.vhd'), vhd.stdout);
    same(at('piped.vhd'), 'vpc', img.raw, 'raw');
    for (const format of ['vhd', 'vdi', 'qcow2']) {
      const r = pipe(format);
      assert.equal(r.status, 2, `${format}: ${r.stderr}`);
      assert.equal(r.stdout.length, 0);
      assert.match(r.stderr.toString(), /E_USAGE.*pipe/);
    }
  });
});

describe('bad VHD and VDI input exits 3 and leaves the store as it was', () => {
  const edit = (src: string, name: string, fn: (b: Buffer) => Buffer | void, fix = true): string => {
    const b = fs.readFileSync(src);
    const out = fn(b) ?? b;
    if (fix && src.endsWith('.vhd')) fixVhdChecksums(out);
    fs.writeFileSync(at(name), out);
    return at(name);
  };
  const cases: Array<[string, () => string]> = [
    ['a truncated dynamic VHD', () => edit(img.vhdDynamic, 'cut.vhd', (b) => b.subarray(0, b.length >> 1))],
    ['a VHD BAT entry past the end', () => edit(img.vhdDynamic, 'bateof.vhd', (b) => void b.writeUInt32BE(0x7fffff00, batOffset(b)))],
    ['a VHD BAT entry into the headers', () => edit(img.vhdDynamic, 'bathdr.vhd', (b) => void b.writeUInt32BE(1, batOffset(b)))],
    ['a VHD footer with a bad checksum', () => edit(img.vhdDynamic, 'sum.vhd', (b) => void (b[b.length - 512 + 80] ^= 0x40), false)],
    ['a VHD block size out of range', () => edit(img.vhdDynamic, 'bs.vhd', (b) => void b.writeUInt32BE(1 << 30, 512 + 32))],
    ['a differencing VHD loop', () => at('la.vhd')], // made in before(): la names lb, lb names la
    ['a truncated dynamic VDI', () => edit(img.vdiDynamic, 'cut.vdi', (b) => b.subarray(0, b.length - 4096))],
    ['a VDI block map entry past the end', () => edit(img.vdiDynamic, 'bm.vdi', (b) => void b.writeUInt32LE(b.readUInt32LE(0x180) - 1, b.readUInt32LE(0x154)))],
    ['a VDI with an absurd disk size', () => edit(img.vdiDynamic, 'huge.vdi', (b) => void b.writeBigUInt64LE(1n << 60n, 0x170))],
  ];
  let objects = 0;
  let images: string[] = [];
  before(async () => {
    await fs.promises.copyFile(at('child.vhd'), at('la.vhd'));
    await fs.promises.copyFile(at('child.vhd'), at('lb.vhd'));
    await makeDifferencing(at('la.vhd'), at('lb.vhd'), 'lb.vhd');
    await makeDifferencing(at('lb.vhd'), at('la.vhd'), 'la.vhd');
    objects = vmdnOk(store, ['stats']).objects;
    images = vmdnOk(store, ['images']).images.map((i: { ref: string }) => i.ref);
  });
  for (const [name, make] of cases) {
    it(name, () => {
      const input = make();
      const r = vmdn(store, ['import', input, '--name', 'bad']);
      assert.equal(r.status, 3, `${r.stdout}${r.stderr}`);
      assert.match(r.json?.error?.code ?? '', /^E_(FORMAT|TRUNCATED|BACKING)$/);
      assert.deepEqual(vmdnOk(store, ['images']).images.map((i: { ref: string }) => i.ref), images);
      assert.equal(vmdnOk(store, ['stats']).objects, objects, 'a failed import added objects');
    });
  }
});
