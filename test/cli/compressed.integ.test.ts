/**
 * Compressed inputs through the CLI: raw, qcow2 and VMDK images inside gz,
 * xz, zst and bz2 (made by the real tools) import identical to their source;
 * a corrupt stream is exit 3 with the store unchanged and no temp file left;
 * --max-size stops a stream that decompresses to more.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { vmdn, vmdnOk, sh, qemuCompare } from '../helpers/cli.js';
import { writeRaw, prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';

const MiB = 1 << 20;
const TOOLS = { gz: ['gzip', '-c'], xz: ['xz', '-c', '-T1'], zst: ['zstd', '-c', '-q'], bz2: ['bzip2', '-c'] } as const;

describe('compressed inputs', () => {
  const t = tmpDir('vmdn-compressed-');
  const at = (...p: string[]) => path.join(t.dir, ...p);
  const store = at('store');
  const compress = (src: string, ext: keyof typeof TOOLS) => {
    const [cmd, ...args] = TOOLS[ext];
    const out = `${src}.${ext}`;
    fs.writeFileSync(out, execFileSync(cmd, [...args, src], { maxBuffer: 64 << 20 }));
    return out;
  };
  const tmpFiles = () => fs.readdirSync(at('store', 'tmp'));

  before(() => {
    writeRaw(at('src.raw'), 4 * MiB + 4096, [{ offset: 0, data: Buffer.from('compressed input\n'.repeat(3000)) }, { offset: 3 * MiB, data: prng(7, 256 * 1024) }]);
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', at('src.raw'), at('src.qcow2')]);
    sh('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', at('src.raw'), at('src.vmdk')]);
  });
  after(() => t.cleanup());

  for (const fmt of ['raw', 'qcow2', 'vmdk'] as const) {
    it(`${fmt} inside gz, xz, zst and bz2 imports identical, temp file removed`, () => {
      for (const ext of Object.keys(TOOLS) as Array<keyof typeof TOOLS>) {
        const file = compress(at(`src.${fmt}`), ext);
        const name = `${fmt}-${ext}`;
        const r = vmdnOk(store, ['import', file, '--name', name]);
        assert.equal(r.decompressed.compression, { gz: 'gzip', xz: 'xz', zst: 'zstd', bz2: 'bzip2' }[ext]);
        assert.deepEqual(tmpFiles(), [], 'no temp file left');
        vmdnOk(store, ['export', name, at(`${name}.qcow2`)]);
        assert.ok(qemuCompare(at('src.raw'), at(`${name}.qcow2`)).identical, name);
        fs.rmSync(at(`${name}.qcow2`));
      }
    });
  }

  it('an OVA inside .gz imports too', () => {
    const dir = at('ova.d');
    fs.mkdirSync(dir);
    fs.copyFileSync(at('src.vmdk'), path.join(dir, 'd.vmdk'));
    fs.writeFileSync(path.join(dir, 'vm.ovf'), `<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"><References><File ovf:id="f" ovf:href="d.vmdk"/></References><DiskSection><Info>d</Info><Disk ovf:diskId="d" ovf:fileRef="f" ovf:capacity="${4 * MiB + 4096}"/></DiskSection></Envelope>`);
    sh('tar', ['-cf', at('vm.ova'), '-C', dir, 'vm.ovf', 'd.vmdk']);
    const r = vmdnOk(store, ['import', compress(at('vm.ova'), 'gz'), '--name', 'ovagz']);
    assert.equal(r.ref, 'ovagz-disk1:latest');
    vmdnOk(store, ['export', 'ovagz-disk1', at('ovagz.raw')]);
    assert.ok(qemuCompare(at('src.raw'), at('ovagz.raw')).identical);
  });

  it('a corrupt stream or one past --max-size: exit 3, nothing left in the store or its tmp dir', () => {
    const gz = fs.readFileSync(compress(at('src.qcow2'), 'gz'));
    const bad = Buffer.from(gz);
    for (let i = 100; i < 400; i++) bad[i] ^= 0x5a;
    fs.writeFileSync(at('bad.qcow2.gz'), bad);
    fs.writeFileSync(at('cut.qcow2.gz'), gz.subarray(0, gz.length >> 1));
    const xz = fs.readFileSync(compress(at('src.raw'), 'xz'));
    fs.writeFileSync(at('bad.raw.xz'), Buffer.concat([xz.subarray(0, 200), Buffer.alloc(64, 1), xz.subarray(264)]));
    const objects = vmdnOk(store, ['stats']).objects;
    const images = vmdnOk(store, ['images']).images.length;
    for (const [file, extra, re] of [
      [at('bad.qcow2.gz'), [], /corrupt gzip/], [at('cut.qcow2.gz'), [], /corrupt gzip/], [at('bad.raw.xz'), [], /corrupt xz/],
      [`${at('src.raw')}.zst`, ['--max-size', '1M'], /more than 1048576 bytes/],
    ] as Array<[string, string[], RegExp]>) {
      const r = vmdn(store, ['import', file, '--name', 'bad', ...extra]);
      assert.equal(r.status, 3, `${file}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout + r.stderr, /E_FORMAT/);
      assert.match(r.stdout + r.stderr, re);
      assert.deepEqual(tmpFiles(), [], `${file}: no temp file left`);
    }
    assert.equal(vmdnOk(store, ['stats']).objects, objects);
    assert.equal(vmdnOk(store, ['images']).images.length, images);
  });
});
