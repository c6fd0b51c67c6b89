/**
 * OVA through the CLI, against real tools: an OVA made by `tar` of an OVF and
 * two streamOptimized VMDKs made by qemu-img imports as NAME-disk1/NAME-disk2
 * (or one disk with --disk), each identical to its source; the OVF is kept
 * (inspect --json, survives gc) and written back by export .ova, whose
 * members `tar` lists OVF first, `xmllint` finds well-formed and qemu-img
 * finds identical. Bad OVAs: exit 3, store unchanged.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdn, vmdnOk, sh, qemuCompare } from '../helpers/cli.js';
import { writeRaw, prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { indexesObject } from '../helpers/store-objects.js';

const MiB = 1 << 20;

function ovfText(files: Array<{ href: string; size?: number }>, capacities: number[], extra = ''): string {
  return `<?xml version="1.0" encoding="UTF-8"?>${extra}
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
${files.map((f, i) => `    <File ovf:id="file${i + 1}" ovf:href="${f.href}"${f.size === undefined ? '' : ` ovf:size="${f.size}"`}/>`).join('\n')}
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
${capacities.map((c, i) => `    <Disk ovf:diskId="vmdisk${i + 1}" ovf:fileRef="file${i + 1}" ovf:capacity="${c}" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>`).join('\n')}
  </DiskSection>
  <VirtualSystem ovf:id="vm"><Info>A VM</Info><Name>test vm</Name></VirtualSystem>
</Envelope>
`;
}

describe('OVA import and export', () => {
  const t = tmpDir('vmdn-ova-');
  const at = (...p: string[]) => path.join(t.dir, ...p);
  const store = at('store');
  const sizes = [3 * MiB + 512 * 3, 2 * MiB];

  /** A tar (made by `tar`) in a fresh dir of `members` written there first. */
  function ova(name: string, members: Record<string, string | Buffer>, order = Object.keys(members)): string {
    const dir = at(`${name}.d`);
    fs.mkdirSync(dir, { recursive: true });
    for (const [m, data] of Object.entries(members)) if (!m.includes('/')) fs.writeFileSync(path.join(dir, m), data);
    sh('tar', ['-cf', at(name), '-C', dir, '--format=ustar', ...order]);
    return at(name);
  }
  const vmdk = (i: number) => fs.readFileSync(at(`disk${i}.vmdk`));

  before(() => {
    writeRaw(at('d1.raw'), sizes[0]!, [{ offset: 0, data: Buffer.from('first disk\n'.repeat(5000)) }, { offset: 2 * MiB, data: prng(1, 300 * 1024) }]);
    writeRaw(at('d2.raw'), sizes[1]!, [{ offset: 64 * 1024, data: prng(2, 200 * 1024) }]);
    for (const i of [1, 2]) sh('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', at(`d${i}.raw`), at(`disk${i}.vmdk`)]);
    ova('vm.ova', { 'vm.ovf': ovfText([{ href: 'disk1.vmdk', size: vmdk(1).length }, { href: 'disk2.vmdk' }], sizes), 'disk1.vmdk': vmdk(1), 'disk2.vmdk': vmdk(2) });
  });
  after(() => t.cleanup());

  it('imports every disk as NAME-diskN, identical to its source; --disk N takes one', () => {
    const r = vmdnOk(store, ['import', at('vm.ova'), '--name', 'vm']);
    assert.deepEqual(r.images.map((i: { ref: string }) => i.ref), ['vm-disk1:latest', 'vm-disk2:latest']);
    assert.match(r.ovf, /^[0-9a-f]{64}$/);
    for (const i of [1, 2]) {
      vmdnOk(store, ['export', `vm-disk${i}`, at(`back${i}.qcow2`)]);
      assert.ok(qemuCompare(at(`d${i}.raw`), at(`back${i}.qcow2`)).identical, `disk ${i}`);
    }
    const one = vmdnOk(store, ['import', at('vm.ova'), '--name', 'second', '--disk', '2']);
    assert.equal(one.ref, 'second:latest');
    vmdnOk(store, ['export', 'second', at('second.raw')]);
    assert.ok(qemuCompare(at('d2.raw'), at('second.raw')).identical);
    assert.equal(vmdn(store, ['import', at('vm.ova'), '--name', 'x', '--disk', '3']).status, 2);
  });

  it('keeps the OVF with the image: inspect --json names it, gc keeps it', () => {
    const ins = vmdnOk(store, ['inspect', 'vm-disk1']);
    assert.match(ins.ovf, /^[0-9a-f]{64}$/);
    assert.equal(vmdnOk(store, ['inspect', 'vm-disk2']).ovf, ins.ovf);
    vmdnOk(store, ['rm', 'second']);
    vmdnOk(store, ['gc']);
    const v = vmdnOk(store, ['verify']);
    assert.equal(v.ok, true);
    assert.ok(indexesObject(at('store'), ins.ovf), 'the OVF object survived gc');
  });

  it('exports an OVA: OVF first, well-formed, disks identical, stored OVF updated', () => {
    const out = at('out.ova');
    const r = vmdnOk(store, ['export', 'vm-disk1', out, '--add-disk', 'vm-disk2']);
    assert.equal(r.ovf, 'stored');
    assert.deepEqual(sh('tar', ['-tf', out]).trim().split('\n'), ['out.ovf', 'out-disk1.vmdk', 'out-disk2.vmdk']);
    fs.mkdirSync(at('x'));
    sh('tar', ['-xf', out, '-C', at('x')]);
    sh('xmllint', ['--noout', at('x', 'out.ovf')]);
    const ovf = fs.readFileSync(at('x', 'out.ovf'), 'utf8');
    assert.match(ovf, /<Name>test vm<\/Name>/);
    for (const i of [1, 2]) {
      const f = at('x', `out-disk${i}.vmdk`);
      assert.ok(ovf.includes(`ovf:href="out-disk${i}.vmdk" ovf:size="${fs.statSync(f).size}"`), ovf);
      assert.ok(ovf.includes(`ovf:capacity="${sizes[i - 1]}"`));
      assert.match(sh('qemu-img', ['info', f]), /create type: streamOptimized/);
      assert.ok(qemuCompare(at(`d${i}.raw`), f).identical, `disk ${i}`);
    }
    // and back in: the exported OVA is an OVA vmdn reads
    const again = vmdnOk(store, ['import', out, '--name', 'again']);
    assert.equal(again.images.length, 2);
  });

  it('exports a generated OVF for an image without one; refuses a pipe', () => {
    vmdnOk(store, ['import', at('d2.raw'), '--name', 'plain']);
    const out = at('plain.ova');
    assert.equal(vmdnOk(store, ['export', 'plain', out]).ovf, 'generated');
    fs.mkdirSync(at('y'));
    sh('tar', ['-xf', out, '-C', at('y')]);
    sh('xmllint', ['--noout', at('y', 'plain.ovf')]);
    assert.match(fs.readFileSync(at('y', 'plain.ovf'), 'utf8'), /ovf:capacity="2097152"/);
    assert.ok(qemuCompare(at('d2.raw'), at('y', 'plain-disk1.vmdk')).identical);
    const r = vmdn(store, ['export', 'plain', '-', '--format', 'ova']);
    assert.equal(r.status, 2);
  });

  it('bad OVAs: exit 3 with a code, store unchanged', () => {
    const d1 = vmdk(1);
    const good = ovfText([{ href: 'disk1.vmdk' }], [sizes[0]!]);
    const truncated = at('trunc.ova');
    fs.writeFileSync(truncated, fs.readFileSync(at('vm.ova')).subarray(0, 512 * 7 + 100));
    const huge = Buffer.from(fs.readFileSync(ova('huge.ova', { 'vm.ovf': good, 'disk1.vmdk': d1 })));
    const h = 512 + Math.ceil(Buffer.byteLength(good) / 512) * 512; // the disk's header
    huge.write('77777777777\0', h + 124, 'latin1'); // its size: 8 GiB, past the end of the archive
    huge.fill(0x20, h + 148, h + 156);
    let sum = 0;
    for (let i = h; i < h + 512; i++) sum += huge[i]!;
    huge.write(`${sum.toString(8).padStart(6, '0')}\0 `, h + 148, 'latin1');
    fs.writeFileSync(at('huge.ova'), huge);
    const cases: Array<[string, string, string]> = [
      ['missing disk', ova('missing.ova', { 'vm.ovf': ovfText([{ href: 'disk1.vmdk' }, { href: 'gone.vmdk' }], sizes), 'disk1.vmdk': d1 }), 'E_FORMAT'],
      ['../x href', ova('dotdot.ova', { 'vm.ovf': ovfText([{ href: '../x' }], [MiB]) }), 'E_FORMAT'],
      ['absolute href', ova('abs.ova', { 'vm.ovf': ovfText([{ href: '/etc/passwd' }], [MiB]) }), 'E_FORMAT'],
      ['size mismatch', ova('size.ova', { 'vm.ovf': ovfText([{ href: 'disk1.vmdk', size: 12345 }], [sizes[0]!]), 'disk1.vmdk': d1 }), 'E_FORMAT'],
      ['huge member size', at('huge.ova'), 'E_TRUNCATED'],
      ['truncated tar', truncated, 'E_TRUNCATED'],
      ['DOCTYPE entity', ova('xxe.ova', { 'vm.ovf': ovfText([{ href: 'disk1.vmdk' }], [sizes[0]!], '<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'), 'disk1.vmdk': d1 }), 'E_FORMAT'],
      ['second disk corrupt', ova('corrupt.ova', { 'vm.ovf': ovfText([{ href: 'disk1.vmdk' }, { href: 'disk2.vmdk' }], sizes), 'disk1.vmdk': d1, 'disk2.vmdk': Buffer.concat([vmdk(2).subarray(0, 1024), Buffer.alloc(4096, 0xee)]) }), 'E_'],
    ];
    const before = vmdnOk(store, ['stats']);
    const names = vmdnOk(store, ['images']).images.length;
    for (const [what, file, code] of cases) {
      const r = vmdn(store, ['import', file, '--name', 'bad']);
      assert.equal(r.status, 3, `${what}: ${r.stderr}`);
      assert.ok(r.stderr.includes(code) || r.stdout.includes(code), `${what}: ${r.stderr}`);
    }
    assert.equal(vmdnOk(store, ['images']).images.length, names);
    assert.equal(vmdnOk(store, ['stats']).objects, before.objects);
  });

  it('an OVF not first in the archive is read, with a note', () => {
    const f = ova('late.ova', { 'disk1.vmdk': vmdk(1), 'vm.ovf': ovfText([{ href: 'disk1.vmdk' }], [sizes[0]!]) });
    const r = vmdnOk(store, ['import', f, '--name', 'late']);
    assert.ok(r.notes.some((n: string) => /not the archive's first member/.test(n)), r.notes.join('\n'));
  });
});
