/** The OVA pieces on their own: tar headers read and written, the OVF reader and editor, compression magic. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { listTar } from '../../src/container/ova/tar.js';
import { tarHeader } from '../../src/container/ova/tar-write.js';
import { reader, tarOf } from './ova-fixtures.js';
import { generateOvf, parseOvf, updateOvf, STREAM_OPTIMIZED } from '../../src/container/ova/ovf.js';
import { parseXml } from '../../src/container/ova/xml.js';
import { compressionOf } from '../../src/container/compressed.js';
import { VmdnError } from '../../src/errors.js';
import { decodeManifest, encodeManifest, validateManifest, type Manifest } from '../../src/model/manifest.js';
import { namedObjects } from '../../src/model/objects.js';

const code = (c: string) => (e: unknown) => e instanceof VmdnError && e.code === c;

it('tar: members are found at their offsets, in order', async () => {
  const a = Buffer.from('descriptor');
  const b = Buffer.alloc(1000, 7);
  const tar = tarOf([['vm.ovf', a], ['d.vmdk', b]]);
  const m = await listTar(reader(tar), tar.length, 'x.ova');
  assert.deepEqual(m, [{ name: 'vm.ovf', offset: 512, size: a.length }, { name: 'd.vmdk', offset: 1536, size: 1000 }]);
  assert.deepEqual(tar.subarray(m[1]!.offset, m[1]!.offset + 1000), b);
});

it('tar: sizes past 8 GiB use base-256 and read back', async () => {
  const h = tarHeader('big.vmdk', 2 ** 40 + 5, 0);
  assert.equal(h[124], 0x80);
  const tar = Buffer.concat([h, Buffer.alloc(1024)]);
  await assert.rejects(listTar(reader(tar), tar.length, 'x'), code('E_TRUNCATED'));
});

it('tar: bad names, types, checksums and truncation are refused', async () => {
  for (const [name, want] of [['../x', 'E_FORMAT'], ['/etc/passwd', 'E_FORMAT'], ['a/b.vmdk', 'E_FORMAT'], ['ok/../../x', 'E_FORMAT']] as const) {
    const tar = tarOf([[name, Buffer.from('x')]]);
    await assert.rejects(listTar(reader(tar), tar.length, 'x'), code(want), name);
  }
  const tar = tarOf([['a', Buffer.alloc(2000)]]);
  const sym = Buffer.from(tar);
  sym[156] = 0x32; // '2': a symlink; checksum fixed below
  let sum = 0;
  sym.fill(0x20, 148, 156);
  for (let i = 0; i < 512; i++) sum += sym[i]!;
  sym.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  await assert.rejects(listTar(reader(sym), sym.length, 'x'), /not a regular file/);
  const bad = Buffer.from(tar);
  bad[0] ^= 1;
  await assert.rejects(listTar(reader(bad), bad.length, 'x'), /checksum/);
  await assert.rejects(listTar(reader(tar), 1500, 'x'), code('E_TRUNCATED'));
  const dup = tarOf([['a', Buffer.from('1')], ['a', Buffer.from('2')]]);
  await assert.rejects(listTar(reader(dup), dup.length, 'x'), /twice/);
});

const OVF = (files: string, disks: string, extra = '') => `<?xml version="1.0"?>${extra}
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
 <References>${files}</References>
 <DiskSection><Info>x</Info>${disks}</DiskSection>
</Envelope>`;

it('ovf: files and disks with their units', () => {
  const o = parseOvf(OVF('<File ovf:id="f1" ovf:href="a.vmdk" ovf:size="123"/>',
    '<Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="2" ovf:capacityAllocationUnits="byte * 2^30"/><Disk ovf:diskId="d2" ovf:capacity="4096"/>'), 'vm.ovf');
  assert.deepEqual(o.files.map((f) => [f.id, f.href, f.size]), [['f1', 'a.vmdk', 123]]);
  assert.deepEqual(o.disks.map((d) => [d.diskId, d.capacity, d.fileRef]), [['d1', 2 ** 31, 'f1'], ['d2', 4096, undefined]]);
});

it('ovf: DOCTYPE, entities, unsafe hrefs, dangling refs and huge sizes are refused', () => {
  const disk = '<Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="1"/>';
  const bad: Array<[string, RegExp]> = [
    [OVF('<File ovf:id="f1" ovf:href="a"/>', disk, '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'), /DOCTYPE/],
    [OVF('<File ovf:id="f1" ovf:href="&e;"/>', disk), /entity/],
    [OVF('<File ovf:id="f1" ovf:href="../x"/>', disk), /outside/],
    [OVF('<File ovf:id="f1" ovf:href="/abs"/>', disk), /absolute/],
    [OVF('<File ovf:id="f1" ovf:href="http://evil/x"/>', disk), /URL/],
    [OVF('<File ovf:id="f2" ovf:href="a"/>', disk), /does not list/],
    [OVF('<File ovf:id="f1" ovf:href="a"/>', '<Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="99999999999999999"/>'), /larger/],
    [OVF('<File ovf:id="f1" ovf:href="a"/>', '<Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="2" ovf:capacityAllocationUnits="byte * 2^60"/>'), /units/],
    ['<Envelope><a></b></Envelope>', /does not match/],
    ['<Envelope>', /not closed/],
    ['<x/>', /not an OVF/],
    [`<Envelope>${'<a>'.repeat(100)}${'</a>'.repeat(100)}</Envelope>`, /deeper/],
  ];
  for (const [text, re] of bad) assert.throws(() => parseOvf(text, 'vm.ovf'), (e: unknown) => e instanceof VmdnError && e.code === 'E_FORMAT' && re.test(e.message), text.slice(0, 80));
});

it('ovf: a stored descriptor is updated in place; a generated one parses', () => {
  const src = OVF('<File ovf:id="f1" ovf:href="orig.vmdk" ovf:size="1"/>', '<Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^20"/>', '<!-- kept -->');
  const text = updateOvf(parseOvf(src, 's'), [{ href: 'vm-disk1.vmdk', size: 4096, capacity: 8 << 20 }])!;
  assert.match(text, /<!-- kept -->/);
  const o = parseOvf(text, 'u');
  assert.deepEqual([o.files[0]!.href, o.files[0]!.size, o.disks[0]!.capacity, o.disks[0]!.format], ['vm-disk1.vmdk', 4096, 8 << 20, STREAM_OPTIMIZED]);
  assert.equal(updateOvf(parseOvf(src, 's'), []), undefined);
  const g = parseOvf(generateOvf('a & b', [{ href: 'x-disk1.vmdk', size: 1, capacity: 512 }, { href: 'x-disk2.vmdk', size: 2, capacity: 1024 }]), 'g');
  assert.deepEqual(g.disks.map((d) => [d.capacity, g.files.find((f) => f.id === d.fileRef)!.href]), [[512, 'x-disk1.vmdk'], [1024, 'x-disk2.vmdk']]);
  assert.equal(parseXml('<a x="&lt;&#65;&#x42;"/>', 't').attrs[0]!.value, '<AB');
});

it('compression is told by magic', () => {
  assert.equal(compressionOf(Buffer.from([0x1f, 0x8b, 8, 0])), 'gzip');
  assert.equal(compressionOf(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0])), 'xz');
  assert.equal(compressionOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd');
  assert.equal(compressionOf(Buffer.from('BZh91AY&SY')), 'bzip2');
  assert.equal(compressionOf(Buffer.from('BZh is not bzip2')), undefined);
  assert.equal(compressionOf(Buffer.from('QFI\xfb', 'latin1')), undefined);
});

it('manifest: ovf must be a digest, and the one walk lists it (gc, push and pull keep it)', () => {
  const m = { kind: 'vmdn.manifest', version: 1, virtualSize: 4096, source: { format: 'vmdk', clusterSize: 65536 }, chunker: 'fixed:64k', allocated: 0, chunks: [] } as unknown as Manifest;
  const ovf = 'ab'.repeat(32);
  assert.equal(namedObjects({ ...m, ovf }).get(ovf), 'ovf');
  assert.equal(decodeManifest(encodeManifest({ ...m, ovf })).ovf, ovf);
  assert.throws(() => validateManifest({ ...m, ovf: 'nope' }), /ovf/);
});
