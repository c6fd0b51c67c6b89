import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { seedFrom } from '../helpers/rng.js';
import { fuzzCases } from '../helpers/fuzz.js';
import { decodeManifest, encodeManifest, MANIFEST_KIND, type Manifest } from '../../src/model/manifest.js';
import { VmdnError } from '../../src/errors.js';

const D = (c: string) => c.repeat(64);
const good = (): Manifest => ({
  kind: MANIFEST_KIND,
  version: 1,
  virtualSize: 1 << 30,
  source: { format: 'qcow2', clusterSize: 65536 },
  chunker: 'cdc:16k:64k:256k',
  allocated: 1 << 20,
  chunks: [[0, 65536, D('a')], [65536, 1000, D('b')], [1 << 29, 4096, D('a')]],
});

const rejects = (m: unknown, why: string) =>
  assert.throws(() => decodeManifest(new TextEncoder().encode(JSON.stringify(m))), (e: VmdnError) => e.code === 'E_MANIFEST', why);

describe('manifest v1', () => {
  it('round-trips through its encoding', () => {
    assert.deepEqual(decodeManifest(encodeManifest(good())), good());
  });

  it('refuses each kind of bad field', () => {
    const cases: Array<[string, (m: any) => void]> = [
      ['kind', (m) => (m.kind = 'other')],
      ['version', (m) => (m.version = 2)],
      ['negative size', (m) => (m.virtualSize = -1)],
      ['fractional size', (m) => (m.virtualSize = 1.5)],
      ['allocated > size', (m) => (m.allocated = m.virtualSize + 1)],
      ['overlap', (m) => (m.chunks[1][0] = 100)],
      ['out of order', (m) => m.chunks.reverse()],
      ['past end', (m) => (m.chunks[2][0] = m.virtualSize - 10)],
      ['zero length', (m) => (m.chunks[1][1] = 0)],
      ['huge chunk', (m) => (m.chunks[1][1] = 1 << 25)],
      ['bad digest', (m) => (m.chunks[0][2] = 'A'.repeat(64))],
      ['short entry', (m) => m.chunks[0].pop()],
      ['chunks not a list', (m) => (m.chunks = {})],
      ['source missing', (m) => delete m.source],
    ];
    for (const [why, mutate] of cases) {
      const m = structuredClone(good());
      mutate(m);
      rejects(m, why);
    }
    assert.throws(() => decodeManifest(new Uint8Array([0xff, 0xfe])), (e: VmdnError) => e.code === 'E_MANIFEST');
    assert.throws(() => decodeManifest(new TextEncoder().encode('{"kind":')), (e: VmdnError) => e.code === 'E_MANIFEST');
  });

  it('fuzz: random byte mutations either decode to a valid manifest or throw E_MANIFEST', () => {
    const bytes = encodeManifest(good());
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(bytes.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (edits) => {
        const b = new Uint8Array(bytes);
        for (const [i, v] of edits) b[i] = v;
        try {
          decodeManifest(b);
        } catch (e) {
          assert.ok(e instanceof VmdnError && e.code === 'E_MANIFEST', String(e));
        }
      }),
      { numRuns: fuzzCases(2000), seed: seedFrom('VMDN_FUZZ_SEED') },
    );
  });
});
