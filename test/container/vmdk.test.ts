/**
 * VMDK without qemu: both writers read back through the reader (partial and
 * unaligned writes, gaps, all-zero grains, a partial last grain), the stream
 * sink produces the file's bytes, the descriptor parser and the extent-name
 * rule, detection by magic, and how output formats are chosen.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { VmdkDisk } from '../../src/container/vmdk/reader.js';
import { createVmdkWriter } from '../../src/container/vmdk/writer.js';
import { createStreamOptimizedWriter } from '../../src/container/vmdk/stream-writer.js';
import { streamSink } from '../../src/container/vmdk/sink.js';
import { parseDescriptor, buildDescriptor, checkExtentName } from '../../src/container/vmdk/descriptor.js';
import { classify } from '../../src/container/probe.js';
import { formatFromPath, openWriter } from '../../src/container/writers.js';
import type { DiskWriter, Extent } from '../../src/container/disk.js';
import { VmdnError } from '../../src/errors.js';
import { prng } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';

const t = tmpDir('vmdn-vmdk-unit-');
after(() => t.cleanup());
const at = (n: string): string => path.join(t.dir, n);

const SIZE = 3 * 65536 * 512 + 4096 + 700; // several grain tables' worth; last grain and sector partial
/** Ascending writes: unaligned, with gaps, one all-zero grain, data in the last (partial) sector. */
const WRITES: [number, Buffer][] = [
  [100, prng(1, 5000)],
  [65536 * 3 - 10, prng(2, 20)], // straddles a grain boundary
  [65536 * 7, Buffer.alloc(65536)], // a whole grain of zeros: stays unallocated
  [65536 * 512 + 4096, prng(3, 200_000)], // in the second grain table
  [SIZE - 300, prng(4, 300)],
];

function expected(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (const [o, d] of WRITES) d.copy(b, o);
  return b;
}

async function fill(w: DiskWriter): Promise<void> {
  for (const [o, d] of WRITES) await w.write(o, d);
  await w.finish();
}

async function readBack(file: string): Promise<{ bytes: Buffer; extents: Extent[] }> {
  const d = await VmdkDisk.open(file);
  try {
    const extents: Extent[] = [];
    for await (const e of d.extents()) extents.push(e);
    assert.equal(d.virtualSize, Math.ceil(SIZE / 512) * 512, 'capacity is the size rounded up to a sector');
    return { bytes: Buffer.from(await d.read(0, d.virtualSize)), extents };
  } finally {
    await d.close();
  }
}

describe('vmdk writers read back', () => {
  for (const sub of ['streamOptimized', 'monolithicSparse'] as const) {
    it(`${sub}: content, holes for zero grains, nothing else left beside the file`, async () => {
      const out = at(`${sub}.vmdk`);
      await fill(await createVmdkWriter(out, SIZE, sub));
      const { bytes, extents } = await readBack(out);
      assert.ok(bytes.equals(expected(bytes.length)));
      assert.ok(!extents.some((e) => e.offset <= 65536 * 7 && e.offset + e.length > 65536 * 7), 'the all-zero grain is a hole');
      assert.deepEqual((await fs.readdir(t.dir)).filter((n) => n.includes('.tmp-')), []);
    });
  }

  it('streamOptimized through a stream sink is byte for byte the file output', async () => {
    const pipe = new PassThrough();
    const chunks: Buffer[] = [];
    pipe.on('data', (c: Buffer) => chunks.push(c));
    await fill(await createStreamOptimizedWriter(streamSink(pipe, 'pipe'), SIZE, 'same.vmdk'));
    const file = at('same.vmdk');
    await fill(await createVmdkWriter(file, SIZE, 'streamOptimized'));
    assert.ok(Buffer.concat(chunks).equals(await fs.readFile(file)));
  });

  it('an aborted writer leaves no file; an empty disk is refused', async () => {
    const w = await createVmdkWriter(at('aborted.vmdk'), SIZE, 'streamOptimized');
    await w.write(0, prng(5, 1000));
    await w.abort();
    assert.deepEqual((await fs.readdir(t.dir)).filter((n) => n.startsWith('aborted')), []);
    await assert.rejects(createVmdkWriter(at('empty.vmdk'), 0, 'monolithicSparse'), (e: VmdnError) => e.code === 'E_USAGE');
    await assert.rejects(createVmdkWriter(at('empty.vmdk'), 0, 'streamOptimized'), (e: VmdnError) => e.code === 'E_USAGE');
    assert.deepEqual((await fs.readdir(t.dir)).filter((n) => n.startsWith('empty')), []);
  });
});

describe('vmdk descriptor', () => {
  it('parses qemu-style text: CRLF, comments, NUL padding, ddb lines', () => {
    const text = buildDescriptor('monolithicSparse', 2048, 'a.vmdk', 0x1234).replace(/\n/g, '\r\n') + 'RW 100 FLAT "b-flat.vmdk" 7\r\nRDONLY 50 ZERO\r\n';
    const d = parseDescriptor(Buffer.concat([Buffer.from(text, 'latin1'), Buffer.alloc(300)]), 'x');
    assert.equal(d.createType, 'monolithicSparse');
    assert.deepEqual(d.extents, [
      { type: 'SPARSE', sectors: 2048, file: 'a.vmdk', offset: 0 },
      { type: 'FLAT', sectors: 100, file: 'b-flat.vmdk', offset: 7 },
      { type: 'ZERO', sectors: 50, file: null, offset: 0 },
    ]);
    assert.equal(d.capacity, 2198);
  });

  it('extent names are plain file names', () => {
    for (const ok of ['disk-s001.vmdk', 'a b.vmdk', '..x']) checkExtentName(ok, 'd');
    for (const bad of ['', '.', '..', '../x', 'a/b', '/etc/passwd', 'a\\b', 'a\nb', 'x'.repeat(300)]) {
      assert.throws(() => checkExtentName(bad, 'd'), (e: VmdnError) => e.code === 'E_FORMAT', bad);
    }
  });
});

describe('vmdk detection and output choice', () => {
  it('classify: sparse magic and descriptor text are vmdk', () => {
    const kdmv = Buffer.alloc(512);
    kdmv.write('KDMV', 'latin1');
    assert.equal(classify('f', kdmv, Buffer.alloc(0)), 'vmdk');
    assert.equal(classify('f', Buffer.from('# Disk DescriptorFile\nversion=1\n'), Buffer.alloc(0)), 'vmdk');
  });

  it('formats: .vmdk and stdout mean streamOptimized; formats with tables before the data may not go to stdout', async () => {
    assert.equal(formatFromPath('x.vmdk'), 'vmdk');
    assert.equal(formatFromPath('-'), 'vmdk');
    assert.equal(formatFromPath('x.img', 'vmdk-sparse'), 'vmdk-sparse');
    for (const f of ['qcow2', 'vmdk-sparse', 'vhd', 'vdi'] as const) await assert.rejects(openWriter('-', 4096, f), (e: VmdnError) => e.code === 'E_USAGE');
    await assert.rejects(openWriter(at('c.vmdk'), 4096, 'vmdk', 'zstd'), (e: VmdnError) => e.code === 'E_USAGE');
  });
});
