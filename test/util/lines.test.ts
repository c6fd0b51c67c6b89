/** boundedLines: the same lines as a split, whatever the pieces; a line over the bound is an error, not a buffer without end. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { boundedLines } from '../../src/util/lines.js';
import { VmdnError } from '../../src/errors.js';

async function* pieces(b: Buffer, step: number) {
  for (let i = 0; i < b.length; i += step) yield b.subarray(i, i + step);
}
const collect = async (it: AsyncIterable<string>) => {
  const out: string[] = [];
  for await (const l of it) out.push(l);
  return out;
};

describe('boundedLines', () => {
  it('splits on LF (dropping CR) across any piece size, multi-byte characters included', async () => {
    const text = 'Package: a\r\nDescription: caf\u00e9 \u2014 x\n\nPackage: b\nlast';
    for (const step of [1, 2, 3, 7, 1000]) {
      assert.deepEqual(await collect(boundedLines(pieces(Buffer.from(text), step), 100, 't')), ['Package: a', 'Description: caf\u00e9 \u2014 x', '', 'Package: b', 'last']);
    }
  });

  it('refuses a line longer than the bound, with or without its newline', async () => {
    for (const text of ['ok\n' + 'x'.repeat(500) + '\nmore\n', 'ok\n' + 'y'.repeat(500)]) {
      await assert.rejects(collect(boundedLines(pieces(Buffer.from(text), 64), 100, 'index')), (e: unknown) => e instanceof VmdnError && e.code === 'E_FORMAT' && /index: a line longer than 100/.test(e.message));
    }
  });
});
