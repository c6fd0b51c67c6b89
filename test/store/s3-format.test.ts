/**
 * The S3 store's parsers (pack indexes, name records, refs lists) and its
 * URL: round trips, then seeded mutations that must end in a VmdnError or a
 * result whose every entry still lies inside the pack, never a crash.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodePackIndex, encodePackIndex, type PackEntry } from '../../src/store/s3/pack-format.js';
import { decodeRefs, parseRecord } from '../../src/store/s3/s3-names.js';
import { parseS3Url } from '../../src/store/s3/location.js';
import { sha256 } from '../../src/store/digest.js';
import { VmdnError } from '../../src/errors.js';
import { fuzzLoop } from '../helpers/fuzz.js';
import { prng } from '../helpers/images.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';

const SEED = seedFrom('VMDN_S3_FUZZ_SEED');

function sampleIndex(n: number): { entries: PackEntry[]; size: number } {
  const entries: PackEntry[] = [];
  let off = 0;
  for (let i = 0; i < n; i++) {
    const stored = 100 + i * 37;
    entries.push({ digest: sha256(Buffer.from(`o${i}`)), offset: off, stored, size: stored * 3 });
    off += stored;
  }
  return { entries, size: off };
}

describe('S3 store formats', () => {
  it('a pack index round-trips', () => {
    const { entries, size } = sampleIndex(50);
    assert.deepEqual(decodePackIndex(encodePackIndex(entries, size), 'x'), { entries, packSize: size });
  });

  it(`a mutated pack index is refused or stays inside its pack (seed ${SEED}; replay with VMDN_S3_FUZZ_SEED)`, async () => {
    const { entries, size } = sampleIndex(20);
    const good = encodePackIndex(entries, size);
    const rnd = mulberry32(SEED);
    const r = await fuzzLoop(2000, 1000, async (i) => {
      const b = Buffer.from(good);
      const what: string[] = [];
      const kind = rnd();
      if (kind < 0.2) { const n = Math.floor(rnd() * b.length); what.push(`truncate ${n}`); return { what: what.join(), run: async () => check(b.subarray(0, n)) }; }
      for (let k = 0; k < 1 + Math.floor(rnd() * 4); k++) {
        const p = Math.floor(rnd() * b.length);
        b[p] = Math.floor(rnd() * 256);
        what.push(`byte ${p}`);
      }
      return { what: `case ${i}: ${what.join()}`, run: async () => check(b) };
    });
    assert.deepEqual(r.failures, []);
    assert.ok((r.outcomes.get('E_FORMAT') ?? 0) > 0);
  });

  it('name records and refs lists are validated', () => {
    const rec = { v: 1, name: 'a', tag: '1', manifest: sha256(Buffer.from('m')), created: 'x', virtualSize: 1, allocatedSize: 1, dataSize: 1, format: 'raw' };
    assert.equal(parseRecord(Buffer.from(JSON.stringify(rec)), 'k').manifest, rec.manifest);
    for (const bad of ['{', '[]', JSON.stringify({ ...rec, v: 2 }), JSON.stringify({ ...rec, manifest: '../x' }), JSON.stringify({ ...rec, virtualSize: -1 })]) {
      assert.throws(() => parseRecord(Buffer.from(bad), 'k'), (e: VmdnError) => e.code === 'E_FORMAT', bad);
    }
    const d = [sha256(prng(1, 10)), sha256(prng(2, 10))];
    assert.deepEqual(decodeRefs(Buffer.concat(d.map((x) => Buffer.from(x, 'hex'))), 'k'), d);
    assert.throws(() => decodeRefs(Buffer.alloc(33), 'k'), (e: VmdnError) => e.code === 'E_FORMAT');
  });

  it('s3:// store URLs: bucket, prefix, endpoint and region checked', () => {
    assert.deepEqual(parseS3Url('s3://my-bucket/a/b?endpoint=http://127.0.0.1:7480&region=eu-west-1'), { bucket: 'my-bucket', prefix: 'a/b/', endpoint: 'http://127.0.0.1:7480', region: 'eu-west-1' });
    assert.equal(parseS3Url('s3://my-bucket').prefix, '');
    for (const bad of ['s3://B/x', 's3://key:secret@bucket', 's3://bucket?endpoint=ftp://x', 's3://bucket?foo=1', 's3://bucket/a b']) {
      assert.throws(() => parseS3Url(bad), (e: VmdnError) => e.code === 'E_USAGE', bad);
    }
  });
});

function check(b: Uint8Array): string {
  const { entries, packSize } = decodePackIndex(b, 'fuzz');
  for (const e of entries) assert.ok(e.offset + e.stored <= packSize && /^[0-9a-f]{64}$/.test(e.digest));
  return 'ok';
}
