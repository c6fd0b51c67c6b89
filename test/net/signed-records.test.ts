/**
 * Signed image records without HTTP: the origin's signer (sequence numbers
 * that survive a restart, re-signing before expiry) and the client's trust
 * (every kind of refusal, the seen.json state).
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { RecordSigner } from '../../src/net/server/record-signer.js';
import { RecordTrust, STATE_FILE } from '../../src/net/client/trust.js';
import { encodePublicKey, generateKey, parsePublicKey } from '../../src/net/wire/minisign.js';
import { parseRecord, type SignedRecord } from '../../src/net/wire/image-record.js';
import type { ImageRecord } from '../../src/store/types.js';
import { VmdnError } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';

const A = 'aa'.repeat(32);
const B = 'bb'.repeat(32);
const H = 3600_000;
const row = (manifest: string, name = 'debian', tag = '12'): ImageRecord =>
  ({ name, tag, manifest, created: '2026-01-01T00:00:00.000Z', virtualSize: 1, allocatedSize: 1, dataSize: 1, format: 'raw' }) as ImageRecord;
const seq = (s: SignedRecord) => parseRecord(s.record).seq;

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'accepted';
  } catch (err) {
    assert.ok(err instanceof VmdnError, String(err));
    assert.equal(err.code, 'E_UNTRUSTED', err.message);
    return String(err.data.reason);
  }
}

describe('signed image records', () => {
  const t = tmpDir('vmdn-signed-');
  after(() => t.cleanup());
  const key = generateKey();
  const ref = { name: 'debian', tag: '12' };

  it('signer: a new manifest takes the next sequence number, kept across a restart of the origin', async () => {
    const dir = path.join(t.dir, 'store');
    let store = await LocalStore.open(dir);
    let s = new RecordSigner(key, store);
    assert.equal(seq(await s.sign(row(A))), 1);
    assert.equal(seq(await s.sign(row(A))), 1);
    assert.equal(s.stats.signed, 1, 'the fresh signature is reused');
    assert.equal(seq(await s.sign(row(B))), 2);
    assert.equal(seq(await s.sign(row(A, 'debian', '13'))), 1, 'per name:tag');
    await store.close();
    store = await LocalStore.open(dir);
    s = new RecordSigner(key, store);
    assert.equal(seq(await s.sign(row(B))), 2, 'same manifest after the restart: same number');
    assert.equal(seq(await s.sign(row(A))), 3, 'back to an older manifest: a new number, never an old one');
    // concurrent first requests of a name take one number, not one each
    const both = await Promise.all([s.sign(row(B, 'x', '1')), s.sign(row(B, 'x', '1'))]);
    assert.deepEqual(both.map(seq), [1, 1]);
    await store.close();
  });

  it('signer: re-signs on request once less than half the validity is left, same sequence, later expiry', async () => {
    let now = Date.parse('2026-06-01T00:00:00Z');
    const s = new RecordSigner(key, undefined, { validityMs: 10 * H, now: () => now });
    const first = await s.sign(row(A));
    now += 4 * H;
    assert.equal((await s.sign(row(A))).record, first.record, 'still fresh: reused');
    now += 2 * H;
    const second = await s.sign(row(A));
    assert.notEqual(second.record, first.record);
    assert.equal(Date.parse(parseRecord(second.record).expires) - now, 10 * H);
    // without side records the sequence is the time in ms: it still only grows
    assert.equal(seq(second), seq(first));
    now += 1000;
    assert.ok(seq(await s.sign(row(B))) > seq(first));
  });

  it('trust: refuses unsigned, foreign, tampered, mismatched, wrong-name, expired and rolled-back records', async () => {
    let now = Date.parse('2026-06-01T00:00:00Z');
    const clock = () => now;
    const signer = new RecordSigner(key, undefined, { validityMs: 10 * H, now: clock });
    const other = new RecordSigner(generateKey(), undefined, { now: clock });
    const dir = path.join(t.dir, 'trust');
    const trust = new RecordTrust([parsePublicKey(encodePublicKey(key))], dir, clock);
    const src = 'http://edge.test';
    const recA = await signer.sign(row(A));
    now += 1000;
    const recB = await signer.sign(row(B));
    assert.equal(await refusal(trust.check(ref, { manifest: A }, src)), 'unsigned');
    assert.equal(await refusal(trust.check(ref, { manifest: A, ...(await other.sign(row(A))) }, src)), 'unknown-key');
    assert.equal(await refusal(trust.check(ref, { ...recA, record: recA.record.replace(A, B) }, src)), 'bad-signature');
    assert.equal(await refusal(trust.check(ref, { ...recA, manifest: B }, src)), 'mismatch');
    assert.equal(await refusal(trust.check({ name: 'debian', tag: '13' }, recA, src)), 'wrong-name');
    assert.equal(fs.existsSync(path.join(dir, STATE_FILE)), false, 'nothing refused is remembered');
    assert.equal(await trust.check(ref, { manifest: A, ...recA }, src), A);
    assert.equal(await trust.check(ref, recB, src), B);
    // a second client process: the state is on disk
    const again = new RecordTrust(trust.keys, dir, clock);
    assert.equal(await refusal(again.check(ref, recA, src)), 'rollback');
    assert.equal(await again.check(ref, recB, src), B, 'the same record again is fine');
    now += 11 * H;
    assert.equal(await refusal(again.check(ref, recB, src)), 'expired');
    const state = JSON.parse(fs.readFileSync(path.join(dir, STATE_FILE), 'utf8'));
    assert.equal(Object.values(state.seen as Record<string, { seq: number }>)[0]!.seq, seq(recB));
    fs.writeFileSync(path.join(dir, STATE_FILE), '{"v":1,"seen":');
    assert.equal(await refusal(again.check(ref, await signer.sign(row(B)), src)), 'state', 'a damaged state is not taken for an empty one');
  });

  it('trust: keys come from --trust files and the trust directory; none means unchecked', () => {
    const dir = path.join(t.dir, 'keys');
    fs.mkdirSync(dir);
    // a trust directory asked for must exist and hold keys
    assert.throws(() => RecordTrust.open({ dir: path.join(t.dir, 'absent') }), (err: VmdnError) => err.code === 'E_USAGE');
    assert.throws(() => RecordTrust.open({ dir }), (err: VmdnError) => err.code === 'E_USAGE' && /holds no \.pub key/.test(err.message));
    const pub = path.join(t.dir, 'origin.pub');
    fs.writeFileSync(pub, encodePublicKey(key));
    assert.equal(RecordTrust.open({ files: [pub], dir })!.keys.length, 1);
    fs.copyFileSync(pub, path.join(dir, 'origin.pub'));
    fs.writeFileSync(path.join(dir, 'second.pub'), encodePublicKey(generateKey()));
    assert.equal(RecordTrust.open({ dir })!.keys.length, 2);
    const old = process.env.VMDN_TRUST_DIR;
    process.env.VMDN_TRUST_DIR = path.join(t.dir, 'nothing-here');
    try {
      assert.equal(RecordTrust.open({}), undefined, 'no keys anywhere: names unchecked, as before');
      assert.equal(RecordTrust.open({ files: [pub] })!.dir, path.join(t.dir, 'nothing-here'));
    } finally {
      if (old === undefined) delete process.env.VMDN_TRUST_DIR;
      else process.env.VMDN_TRUST_DIR = old;
    }
    fs.writeFileSync(path.join(dir, 'junk.pub'), 'not a key');
    assert.throws(() => RecordTrust.open({ dir }), (err: VmdnError) => err.code === 'E_USAGE' && err.message.includes('junk.pub'));
  });
});
