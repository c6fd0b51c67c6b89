/** The minisign formats and the image record: round trips, every tampering refused, and seeded fuzz of the parsers. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodePublicKey, encodeSecretKey, generateKey, keyIdHex, parsePublicKey, parseSecretKey, sign, verify } from '../../src/net/wire/minisign.js';
import { encodeRecord, parseRecord, trustedComment } from '../../src/net/wire/image-record.js';
import { VmdnError } from '../../src/errors.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';

const DIGEST = 'ab'.repeat(32);
const record = (over: Partial<Parameters<typeof encodeRecord>[0]> = {}) =>
  encodeRecord({ name: 'debian', tag: '12', manifest: DIGEST, created: '2026-01-01T00:00:00.000Z', signed: '2026-01-02T00:00:00.000Z', expires: '2026-01-03T00:00:00.000Z', seq: 3, ...over });

const reason = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof VmdnError, `not a VmdnError: ${String(err)}`);
    return `${err.code}:${String(err.data.reason ?? '')}`;
  }
  return 'ok';
};

describe('minisign format', () => {
  const k = generateKey();
  const pub = parsePublicKey(encodePublicKey(k));

  it('round-trips keys: the secret key file signs what the public key file verifies', () => {
    const again = parseSecretKey(encodeSecretKey(k));
    assert.equal(keyIdHex(again.id), keyIdHex(k.id));
    assert.deepEqual(again.raw, k.raw);
    const msg = Buffer.from(record());
    const v = verify(msg, sign(msg, again, 'a trusted comment'), [pub]);
    assert.equal(v.trustedComment, 'a trusted comment');
    assert.match(encodePublicKey(k), /^untrusted comment: minisign public key [0-9A-F]{16}\nRW[A-Za-z0-9+/]{54}\n$/);
    // the base64 line alone is a key too (minisign -P)
    assert.equal(keyIdHex(parsePublicKey(encodePublicKey(k).split('\n')[1]!).id), keyIdHex(k.id));
  });

  it('refuses another key, a changed message, a changed trusted comment and junk, each with its reason', () => {
    const msg = Buffer.from(record());
    const sig = sign(msg, k, 'tc');
    const other = generateKey();
    assert.equal(reason(() => verify(msg, sig, [pub])), 'ok');
    assert.equal(reason(() => verify(msg, sig, [parsePublicKey(encodePublicKey(other))])), 'E_UNTRUSTED:unknown-key');
    assert.equal(reason(() => verify(Buffer.from(record({ seq: 4 })), sig, [pub])), 'E_UNTRUSTED:bad-signature');
    assert.equal(reason(() => verify(msg, sig.replace('trusted comment: tc', 'trusted comment: tC'), [pub])), 'E_UNTRUSTED:bad-signature');
    // the other key's signature under this key's id
    const forged = sign(msg, { ...other, id: k.id }, 'tc');
    assert.equal(reason(() => verify(msg, forged, [pub])), 'E_UNTRUSTED:bad-signature');
    assert.equal(reason(() => verify(msg, '', [pub])), 'E_UNTRUSTED:malformed');
    assert.equal(reason(() => verify(msg, sig.split('\n').slice(0, 2).join('\n'), [pub])), 'E_UNTRUSTED:malformed');
  });

  it('parses image records strictly', () => {
    const r = parseRecord(record());
    assert.equal(r.seq, 3);
    assert.equal(trustedComment(r), `vmdn image record debian:12 seq 3 manifest ${DIGEST} expires 2026-01-03T00:00:00.000Z`);
    for (const bad of [
      record({ seq: 0 }), record({ seq: 1.5 }), record({ manifest: 'xy' }), record({ name: 'Debian' }), record({ tag: '' }),
      record({ expires: 'tomorrow' }), record().replace('"v":1', '"v":2'), '[]', 'null', '{', 'x'.repeat(5000),
    ]) assert.equal(reason(() => parseRecord(bad)), 'E_UNTRUSTED:malformed', bad.slice(0, 80));
  });

  it('fuzz: mutated keys, signatures and records end in a VmdnError or a verified original, never a crash', () => {
    const seed = seedFrom('VMDN_FUZZ_SEED');
    const rnd = mulberry32(seed);
    const msg = Buffer.from(record());
    const sig = sign(msg, k, trustedComment(parseRecord(record())));
    const inputs = [encodePublicKey(k), encodeSecretKey(k), sig, record()];
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      const which = i % inputs.length;
      const chars = [...inputs[which]!];
      const n = 1 + Math.floor(rnd() * 3);
      for (let j = 0; j < n; j++) {
        const at = Math.floor(rnd() * chars.length);
        const op = rnd();
        if (op < 0.5) chars[at] = String.fromCharCode(32 + Math.floor(rnd() * 95));
        else if (op < 0.75) chars.splice(at, 1);
        else chars.splice(at, 0, rnd() < 0.5 ? '\n' : '=');
      }
      const text = chars.join('');
      const changed = text !== inputs[which];
      let out: string;
      try {
        if (which === 0) out = keyIdHex(parsePublicKey(text).id) === keyIdHex(k.id) ? 'key' : 'other-key';
        else if (which === 1) out = parseSecretKey(text).raw.equals(k.raw) ? 'key' : 'other-key';
        else if (which === 2) out = (verify(msg, text, [pub]), 'verified');
        else out = (parseRecord(text), 'record');
      } catch (err) {
        if (!(err instanceof VmdnError)) assert.fail(`seed ${seed} case ${i}: ${String(err)} for ${JSON.stringify(text)}`);
        out = err.code;
      }
      // a changed signature file verifies only if the change was in the untrusted comment
      if (which === 2 && out === 'verified' && changed) {
        // (or the final newline was dropped)
        const rest = (t: string) => t.replace(/\n$/, '').split('\n').slice(1).join('\n');
        assert.equal(rest(text), rest(sig), `seed ${seed} case ${i}`);
      }
      outcomes.set(`${which}:${out}`, (outcomes.get(`${which}:${out}`) ?? 0) + 1);
    }
    assert.ok((outcomes.get('2:E_UNTRUSTED') ?? 0) > 100, `seed ${seed}: ${JSON.stringify([...outcomes])}`);
  });
});
