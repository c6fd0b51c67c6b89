/** The object codec's frame checks: exactly one zstd frame, its size declared and bounded, refused before any decoding. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compress } from 'zstd-napi';
import { decodeObject, encodeObject, MAX_OBJECT_SIZE, singleFrameSize } from '../../src/store/codec.js';
import { sha256 } from '../../src/store/digest.js';
import { VmdnError } from '../../src/errors.js';
import { prng } from '../helpers/images.js';
import { rleFrame, rss, skippableFrame } from '../helpers/zstd-frames.js';

const GiB2 = 2 ** 31;
const corrupt = (e: unknown) => e instanceof VmdnError && e.code === 'E_CORRUPT_OBJECT';

describe('codec frame checks', () => {
  it('finds the end of real frames of every shape (raw, RLE and compressed blocks, checksums)', () => {
    const samples = [Buffer.alloc(0), Buffer.from('x'), Buffer.alloc(300_000), prng(3, 400_000), Buffer.concat([prng(4, 70_000), Buffer.alloc(200_000, 9)])];
    for (const data of samples) {
      for (const enc of [encodeObject(data), compress(data, { compressionLevel: 19, checksumFlag: true } as never)]) {
        assert.equal(singleFrameSize(enc, MAX_OBJECT_SIZE), data.length);
        assert.ok(Buffer.from(decodeObject(sha256(data), enc)).equals(data));
      }
    }
    // a frame cut anywhere is refused as truncated, never read past its end
    const enc = encodeObject(prng(5, 200_000));
    for (let cut = 0; cut < enc.length; cut += 97) assert.equal(typeof singleFrameSize(enc.subarray(0, cut), MAX_OBJECT_SIZE), 'string');
  });

  it('refuses concatenated frames, undeclared or oversized content, trailing bytes and skippable frames, before decoding', () => {
    const one = Buffer.from('a');
    const d = sha256(one);
    const first = Buffer.from(encodeObject(one));
    const hostile: Array<[string, Buffer]> = [
      ['a 1-byte frame, then 2 GiB of zeros without a declared size', Buffer.concat([first, rleFrame(GiB2, false)])],
      ['a 1-byte frame, then 2 GiB of zeros declared', Buffer.concat([first, rleFrame(GiB2, true)])],
      ['a frame without a declared size', rleFrame(GiB2, false)],
      ['a declared size over the bound', rleFrame(GiB2, true)],
      ['a declared size just over the bound', rleFrame(MAX_OBJECT_SIZE + 1, true)],
      ['trailing garbage', Buffer.concat([first, Buffer.from('xyz')])],
      ['trailing zero bytes', Buffer.concat([first, Buffer.alloc(2)])],
      ['a skippable frame after', Buffer.concat([first, skippableFrame(Buffer.alloc(1000))])],
      ['a skippable frame before', Buffer.concat([skippableFrame(Buffer.alloc(10)), first])],
    ];
    for (const [what, bytes] of hostile) {
      const before = rss();
      const t0 = Date.now();
      assert.throws(() => decodeObject(d, bytes, 'test'), corrupt, what);
      const ms = Date.now() - t0;
      const growth = rss() - before;
      assert.ok(ms < 200, `${what}: ${ms} ms`);
      assert.ok(growth < 32 << 20, `${what}: RSS grew ${Math.round(growth / 2 ** 20)} MiB`);
    }
    assert.ok(Buffer.from(decodeObject(d, first)).equals(one));
  });
});
