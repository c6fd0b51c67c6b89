/**
 * The S3 store against a real Ceph RGW (test/helpers/rgw.ts): the same
 * contract suites as the local store, then what only a shared bucket shows.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { S3Store } from '../../src/store/s3/s3-store.js';
import { storeSuite } from './store-suite.js';
import { namesSuite } from './names-suite.js';
import { startRgw, type Rgw } from '../helpers/rgw.js';
import { prng } from '../helpers/images.js';
import { VmdnError } from '../../src/errors.js';
import { collectS3Garbage } from '../../src/store/s3/gc.js';
import { verifyS3Store } from '../../src/store/s3/verify.js';
import { packKey } from '../../src/store/s3/pack-index.js';
import { PutObjectCommand } from '@aws-sdk/client-s3';

let rgw: Rgw;
before(async () => { rgw = await startRgw(); }, { timeout: 200_000 });
after(async () => rgw?.stop());

const open = async (packBytes?: number) => {
  const store = await S3Store.open(rgw.storeUrl('p/q'), { packBytes });
  return { store, cleanup: () => store.close() };
};

storeSuite('S3Store (Ceph RGW)', () => open(), { prunable: false });
storeSuite('S3Store, one object per pack', () => open(1), { prunable: false });
namesSuite('S3Store (Ceph RGW)', () => open());

describe('S3Store: a bucket shared by processes', () => {
  it('a second store on the same bucket reads objects and names the first wrote, verified', async () => {
    const url = rgw.storeUrl();
    const a = await S3Store.open(url);
    const b = await S3Store.open(url);
    try {
      const data = prng(31, 200_000);
      const r = await a.put(data);
      const m = await a.put(prng(32, 1000));
      await a.names.set({ name: 'shared', tag: '1', manifest: m.digest, created: 'x', virtualSize: 1, allocatedSize: 1, dataSize: 1, format: 'raw' }, [r.digest]);
      assert.equal((await b.names.get('shared', '1'))?.manifest, m.digest);
      assert.deepEqual(Buffer.from(await b.get(r.digest)), data);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('concurrent name updates from two stores both land whole, one after the other', async () => {
    const url = rgw.storeUrl();
    const a = await S3Store.open(url);
    const b = await S3Store.open(url);
    try {
      const ms = await Promise.all([a.put(prng(33, 500)), b.put(prng(34, 500))]);
      const rec = (m: string, created: string) => ({ name: 'race', tag: 't', manifest: m, created, virtualSize: 1, allocatedSize: 1, dataSize: 1, format: 'raw' });
      for (let i = 0; i < 5; i++) {
        await Promise.all([a.names.set(rec(ms[0]!.digest, `a${i}`), []), b.names.set(rec(ms[1]!.digest, `b${i}`), [])]);
        const got = await a.names.get('race', 't');
        assert.ok((got?.created === `a${i}` && got.manifest === ms[0]!.digest) || (got?.created === `b${i}` && got.manifest === ms[1]!.digest), JSON.stringify(got));
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a missing bucket is E_NOT_FOUND when the command must not create one', async () => {
    await assert.rejects(S3Store.open(rgw.storeUrl(), { create: false }), (e: VmdnError) => e.code === 'E_NOT_FOUND');
  });

  it('gc beside a writer: an object deduplicated against a pack gc condemns is copied out before the name lands, and survives the sweep', async () => {
    const url = rgw.storeUrl();
    const rec = (name: string, m: string) => ({ name, tag: '1', manifest: m, created: 'x', virtualSize: 1, allocatedSize: 1, dataSize: 1, format: 'raw' });
    const a = await S3Store.open(url);
    const data = prng(41, 100_000);
    const x = await a.put(data);
    const m1 = await a.put(prng(42, 100));
    await a.names.set(rec('old', m1.digest), [x.digest]);
    await a.names.remove('old', '1');
    // the writer has seen x before gc condemns its pack
    const writer = await S3Store.open(url);
    assert.equal((await writer.put(data)).added, false, 'deduplicated');
    const grace = 60_000;
    const first = await collectS3Garbage(a, { graceMs: grace, now: Date.now() + 2 * grace });
    assert.equal(first.condemnedPacks, 1);
    assert.equal(first.deletedPacks, 0, 'a condemned pack waits out the grace period');
    // a reader that knows x only in the condemned pack
    const reader = await S3Store.open(url);
    const m2 = await writer.put(prng(43, 100));
    await writer.names.set(rec('new', m2.digest), [x.digest]);
    await writer.close();
    const second = await collectS3Garbage(a, { graceMs: grace, now: Date.now() + 4 * grace });
    assert.equal(second.deletedPacks, 1, JSON.stringify(second));
    await a.close();
    // its pack deleted under it, the reader finds the copy
    assert.deepEqual(Buffer.from(await reader.get(x.digest)), data);
    await reader.close();
    const fresh = await S3Store.open(url);
    try {
      assert.deepEqual(Buffer.from(await fresh.get(x.digest)), data);
      assert.equal((await fresh.names.get('new', '1'))?.manifest, m2.digest);
    } finally {
      await fresh.close();
    }
  });

  it('a pack changed on the server is caught on read (E_CORRUPT_OBJECT) and by verify', async () => {
    const url = rgw.storeUrl();
    const a = await S3Store.open(url);
    const r = await a.put(prng(51, 60_000));
    await a.close();
    const b = await S3Store.open(url);
    try {
      const at = b.index.objects.get(r.digest)!;
      const got = await b.s3.get(packKey(at.pack));
      const bytes = Buffer.from(got!.body);
      bytes[at.offset + at.stored - 10] ^= 0xff;
      await b.s3.client.send(new PutObjectCommand({ Bucket: b.s3.loc.bucket, Key: b.s3.loc.prefix + packKey(at.pack), Body: bytes }));
      await assert.rejects(b.get(r.digest), (e: VmdnError) => e.code === 'E_CORRUPT_OBJECT');
      const v = await verifyS3Store(b);
      assert.deepEqual(v.problems.map((p) => [p.digest, p.problem]), [[r.digest, 'corrupt']]);
    } finally {
      await b.close();
    }
  });
});
