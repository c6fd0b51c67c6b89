import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  chunkStream, createChunker, formatChunkerSpec, parseChunkerSpec, type Chunker, type ChunkerParams,
} from '../../src/strategy/chunker.js';
import { VmdnError } from '../../src/errors.js';
import {
  VECTOR_PATH, VECTOR_SPECS, computeCase, mulberry32, repoRoot, sha256, vectorInput, type VectorCase,
} from '../../scripts/gen-chunker-vectors.js';

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  const rnd = mulberry32(seed);
  for (let i = 0; i < n; i++) out[i] = rnd();
  return out;
}

/** Reference split: the whole input in one buffer, asking next() repeatedly. */
function referenceLengths(data: Uint8Array, chunker: Chunker): number[] {
  const out: number[] = [];
  for (let pos = 0; pos < data.length; ) {
    const len = chunker.next(data.subarray(pos), true);
    assert.ok(len > 0);
    out.push(len);
    pos += len;
  }
  return out;
}

/** Yield `data` in pieces whose sizes cycle through `sizes` (0 = an empty buffer). */
async function* pieces(data: Uint8Array, sizes: number[]): AsyncIterable<Uint8Array> {
  for (let pos = 0, k = 0; pos < data.length; k++) {
    const n = sizes[k % sizes.length];
    yield data.subarray(pos, pos + n);
    pos += n;
  }
}

async function collect(src: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of src) out.push(c);
  return out;
}

function usageError(err: unknown): boolean {
  return err instanceof VmdnError && err.code === 'E_USAGE';
}

test('golden vectors: committed boundaries are reproduced exactly', async () => {
  const file = JSON.parse(readFileSync(join(repoRoot(), ...VECTOR_PATH), 'utf8')) as {
    input: { seed: number; length: number; sha256: string };
    cases: VectorCase[];
  };
  const input = vectorInput(file.input.seed);
  // Checked first so a failure says whether the input generator or the chunker moved.
  assert.equal(input.length, file.input.length);
  assert.equal(sha256(input), file.input.sha256, 'vector input generator changed');
  assert.deepEqual(file.cases.map((c) => c.spec), VECTOR_SPECS.map((s) => formatChunkerSpec(parseChunkerSpec(s))));
  for (const expected of file.cases) {
    const actual = computeCase(expected.spec, input);
    assert.deepEqual(actual.lengths, expected.lengths, `${expected.spec}: boundaries changed`);
    assert.equal(actual.digest, expected.digest, `${expected.spec}: chunk digest changed`);
    // The streaming path must agree with the one-buffer path on the same input.
    const streamed = await collect(chunkStream(pieces(input, [1 << 20, 12345, 7]), createChunker(parseChunkerSpec(expected.spec))));
    assert.deepEqual(streamed.map((c) => c.length), expected.lengths, `${expected.spec}: streamed boundaries differ`);
  }
});

test('cdc chunks respect min and max; fixed chunks are exact', () => {
  const data = randomBytes(3 << 20, 1);
  // Zeros and a short period stress the max cut (the hash may never match there).
  const mixed = new Uint8Array(data.length * 2);
  mixed.set(data);
  for (let i = data.length + (1 << 20); i < mixed.length; i++) mixed[i] = i % 3;
  for (const spec of ['cdc', 'cdc:4k', 'cdc:64:256:1k', 'cdc:64:64:64', 'cdc:100:128:200']) {
    const chunker = createChunker(parseChunkerSpec(spec));
    const { min, max } = chunker.params;
    for (const input of [data, mixed]) {
      const lengths = referenceLengths(input, chunker);
      assert.equal(lengths.reduce((a, b) => a + b, 0), input.length);
      lengths.forEach((len, i) => {
        assert.ok(len <= max, `${spec}: chunk ${i} is ${len} > max ${max}`);
        if (i < lengths.length - 1) assert.ok(len >= min, `${spec}: chunk ${i} is ${len} < min ${min}`);
      });
    }
  }
  for (const size of [64, 4000, 65536]) {
    const lengths = referenceLengths(data, createChunker(parseChunkerSpec(`fixed:${size}`)));
    const tail = data.length % size;
    assert.equal(lengths.length, Math.ceil(data.length / size));
    lengths.forEach((len, i) => assert.equal(len, i === lengths.length - 1 && tail ? tail : size));
  }
});

test('next(): 0 means "need more data"; answers never look past max', () => {
  const data = randomBytes(1 << 20, 2);
  for (const spec of ['cdc', 'cdc:64:256:1k', 'fixed:4k']) {
    const c = createChunker(parseChunkerSpec(spec));
    const { max } = c.params;
    // cdc never cuts at or before min; fixed only cuts at max.
    const short = c.params.kind === 'fixed' ? max - 1 : c.params.min;
    assert.equal(c.next(data.subarray(0, short), false), 0);
    assert.equal(c.next(data.subarray(0, short), true), short);
    assert.equal(c.next(new Uint8Array(0), true), 0);
    const full = c.next(data.subarray(0, max), false);
    assert.ok(full > 0 && full <= max);
    assert.equal(c.next(data, false), full);
    assert.equal(c.next(data, true), full);
    // Shorter than max and not final: either the same boundary, or "need more".
    const partial = c.next(data.subarray(0, max - 1), false);
    assert.ok(partial === full || (partial === 0 && full >= max - 1), `${spec}: ${partial} vs ${full}`);
  }
});

test('chunkStream boundaries do not depend on how the input is split (property)', async () => {
  const specs = ['cdc:64:256:1k', 'cdc:128:512:2k', 'fixed:100', 'fixed:64'];
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...specs),
      fc.integer({ min: 0, max: 20000 }),
      fc.integer(),
      fc.constantFrom('random', 'zeros', 'lowEntropy'),
      // Piece sizes, cycled; the second arm makes byte-sized pieces common.
      fc.oneof(
        fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.integer({ min: 0, max: 8 }), { minLength: 1, maxLength: 5 }),
      ).filter((a) => a.some((x) => x > 0)),
      async (spec, length, seed, kind, sizes) => {
        const data = kind === 'zeros' ? new Uint8Array(length) : randomBytes(length, seed);
        if (kind === 'lowEntropy') for (let i = 0; i < length; i++) data[i] &= 1;
        const chunker = createChunker(parseChunkerSpec(spec));
        const chunks = await collect(chunkStream(pieces(data, sizes), chunker));
        assert.deepEqual(chunks.map((c) => c.length), referenceLengths(data, chunker));
        // Contents checked after the stream ends: catches chunks aliasing a reused carry buffer.
        assert.deepEqual(Buffer.concat(chunks), Buffer.from(data));
      },
    ),
    { numRuns: 200 },
  );
});

test('chunkStream with default cdc: byte-sized and large pieces agree', async () => {
  const data = randomBytes(640 << 10, 3);
  const chunker = createChunker(parseChunkerSpec('cdc'));
  const expected = referenceLengths(data, chunker);
  for (const sizes of [[1, 2, 3], [1, 2, 3, 65537], [300000], [256 << 10], [data.length], [0, 99999]]) {
    const chunks = await collect(chunkStream(pieces(data, sizes), chunker));
    assert.deepEqual(chunks.map((c) => c.length), expected, `pieces ${sizes.join(',')}`);
    assert.equal(sha256(Buffer.concat(chunks)), sha256(data));
  }
  assert.deepEqual(await collect(chunkStream(pieces(new Uint8Array(0), [1]), chunker)), []);
});

/** Fraction of `edited`'s chunks (by hash) that also occur in `original`. */
function sharedFraction(original: Uint8Array, edited: Uint8Array, chunker: Chunker): number {
  const hashes = (d: Uint8Array): string[] => {
    const out: string[] = [];
    let pos = 0;
    for (const len of referenceLengths(d, chunker)) out.push(sha256(d.subarray(pos, (pos += len))));
    return out;
  };
  const known = new Set(hashes(original));
  const mine = hashes(edited);
  return mine.filter((h) => known.has(h)).length / mine.length;
}

test('cdc resynchronises after an insertion or deletion; fixed does not', () => {
  const original = randomBytes(8 << 20, 4);
  const mid = original.length >> 1;
  const inserted = Buffer.concat([original.subarray(0, mid), Buffer.from('vmdn!!!'), original.subarray(mid)]);
  const deleted = Buffer.concat([original.subarray(0, mid), original.subarray(mid + 5)]);
  for (const spec of ['cdc', 'cdc:4k', 'cdc:64:256:1k']) {
    const chunker = createChunker(parseChunkerSpec(spec));
    for (const edited of [inserted, deleted]) {
      const f = sharedFraction(original, edited, chunker);
      assert.ok(f >= 0.8, `${spec}: only ${(f * 100).toFixed(1)}% of chunks shared`);
    }
  }
  // Sanity check that the metric discriminates: fixed chunks after the edit all shift.
  const f = sharedFraction(original, inserted, createChunker(parseChunkerSpec('fixed:4k')));
  assert.ok(f < 0.6, `fixed shared ${f}`);
});

test('parseChunkerSpec: defaults, units and round trip', () => {
  const cases: [string, ChunkerParams][] = [
    ['fixed', { kind: 'fixed', min: 65536, avg: 65536, max: 65536 }],
    ['fixed:4096', { kind: 'fixed', min: 4096, avg: 4096, max: 4096 }],
    ['cdc', { kind: 'cdc', min: 16384, avg: 65536, max: 262144 }],
    ['cdc:16k:64k:256k', { kind: 'cdc', min: 16384, avg: 65536, max: 262144 }],
    ['cdc:64k', { kind: 'cdc', min: 16384, avg: 65536, max: 262144 }],
    [' CDC:1KiB:4KiB:16KiB ', { kind: 'cdc', min: 1024, avg: 4096, max: 16384 }],
    ['cdc:100:128:1m', { kind: 'cdc', min: 100, avg: 128, max: 1 << 20 }],
    ['fixed:16m', { kind: 'fixed', min: 16 << 20, avg: 16 << 20, max: 16 << 20 }],
  ];
  for (const [spec, params] of cases) {
    const p = parseChunkerSpec(spec);
    assert.deepEqual(p, params, spec);
    assert.deepEqual(parseChunkerSpec(formatChunkerSpec(p)), p, `round trip ${spec}`);
  }
  assert.equal(formatChunkerSpec(parseChunkerSpec('cdc')), 'cdc:16k:64k:256k');
  assert.equal(formatChunkerSpec(parseChunkerSpec('fixed:4000')), 'fixed:4000');
});

test('parseChunkerSpec and createChunker reject bad parameters with E_USAGE', () => {
  const bad = [
    '', 'foo', 'fixed:', 'fixed:0', 'fixed:32', 'fixed:1x', 'fixed:1k:2k', 'fixed:32m', 'fixed:-1',
    'cdc:1k:2k', 'cdc:32:64:128', 'cdc:16k:48k:256k', 'cdc:64k:16k:256k', 'cdc:16k:64k:32k',
    'cdc:1m:2m:32m', 'cdc:128', 'cdc:1.5k', 'cdc:16k:64k:256k:1m', 'rabin:64k',
  ];
  for (const spec of bad) assert.throws(() => parseChunkerSpec(spec), usageError, `'${spec}' accepted`);
  // Params can also arrive from manifests, so createChunker validates too.
  const badParams = [
    { kind: 'cdc', min: 64, avg: 100, max: 200 },
    { kind: 'fixed', min: 64, avg: 128, max: 128 },
    { kind: 'cdc', min: 64, avg: 64, max: Infinity },
    { kind: 'zstd', min: 64, avg: 64, max: 64 },
  ];
  for (const p of badParams) assert.throws(() => createChunker(p as ChunkerParams), usageError, JSON.stringify(p));
});
