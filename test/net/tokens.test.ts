/**
 * Scoped tokens (issue 16): kept only as scrypt hashes; refused once revoked
 * or expired; a read-only token cannot upload and write scope is per name
 * prefix, checked by a real origin over loopback HTTP.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { Origin } from '../../src/net/server/origin.js';
import { pushImage } from '../../src/net/client/push.js';
import { LIST_TTL_MS, TokenStore } from '../../src/net/server/tokens.js';
import { VmdnError } from '../../src/errors.js';
import { prng, writeRaw } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';

const MiB = 1 << 20;
const isCode = (code: string) => (err: unknown) => err instanceof VmdnError && err.code === code;

describe('access tokens', () => {
  let t: ReturnType<typeof tmpDir>;
  let store: LocalStore;
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const now = () => clock;

  before(async () => {
    t = tmpDir('vmdn-tokens-');
    store = await LocalStore.open(path.join(t.dir, 'origin'));
  });
  after(async () => {
    await store.close();
    t.cleanup();
  });

  it('the store keeps a scrypt hash, never the token or its secret', async () => {
    const ts = new TokenStore(store, now);
    const { token, record } = await ts.create({ read: ['team/'], write: [], admin: false });
    assert.match(token, /^vmdn_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const secret = token.split('_')[2]!;
    const files = fs.readdirSync(path.join(store.dir, 'access')).map((f) => fs.readFileSync(path.join(store.dir, 'access', f), 'utf8'));
    const all = files.join('\n');
    assert.ok(all.includes(record.id) && all.includes('"hash"') && all.includes('"salt"'), all);
    assert.ok(!all.includes(secret) && !all.includes(token), 'token in clear in the store');
    assert.ok(!JSON.stringify(await ts.listTokens()).includes('hash'), 'list shows hashes');
    assert.deepEqual((await ts.verify(token)).read, ['team/']);
  });

  it('a wrong secret, an unknown id and garbage are refused', async () => {
    const ts = new TokenStore(store, now);
    const { token } = await ts.create({ read: ['*'], write: [], admin: false });
    const wrong = token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    await assert.rejects(ts.verify(wrong), isCode('E_AUTH'));
    await assert.rejects(ts.verify(`vmdn_0000000000000000_${token.split('_')[2]}`), isCode('E_AUTH'));
    await assert.rejects(ts.verify('hello'), isCode('E_AUTH'));
  });

  it('a revoked token is refused at once here, and within LIST_TTL_MS by another process', async () => {
    const here = new TokenStore(store, now);
    const there = new TokenStore(store, now);
    const { token, record } = await here.create({ read: [], write: ['team/'], admin: false });
    await here.verify(token);
    await there.verify(token);
    await here.revoke(record.id);
    await assert.rejects(here.verify(token), /revoked/);
    clock += LIST_TTL_MS + 1;
    await assert.rejects(there.verify(token), /revoked/);
    assert.ok((await here.listTokens()).find((r) => r.id === record.id)?.revoked);
  });

  it('an expired token is refused', async () => {
    const ts = new TokenStore(store, now);
    const { token } = await ts.create({ read: ['*'], write: [], admin: false }, { expires: new Date(clock + 60_000) });
    await ts.verify(token);
    clock += 60_001;
    await assert.rejects(ts.verify(token), /expired/);
  });

  describe('an origin with scoped tokens', () => {
    let local: LocalStore;
    let origin: Origin<LocalStore>;
    let reader = '';
    let writer = '';
    const ADMIN = 'the-old-shared-token';

    before(async () => {
      local = await LocalStore.open(path.join(t.dir, 'local'));
      const img = path.join(t.dir, 'small.raw');
      writeRaw(img, 4 * MiB, [{ offset: 0, data: prng(5, MiB) }]);
      await importImageFile(local, img, parseImageRef('small:1'), { chunker: DEFAULT_CDC });
      const originStore = await LocalStore.open(path.join(t.dir, 'scoped'));
      const tokens = new TokenStore(originStore);
      reader = (await tokens.create({ read: ['*'], write: [], admin: false })).token;
      writer = (await tokens.create({ read: [], write: ['team/'], admin: false })).token;
      origin = new Origin(originStore, { token: ADMIN, tokens });
      await origin.listen();
    });
    after(async () => {
      await origin.close();
      await origin.store.close();
      await local.close();
    });

    const push = (token: string | undefined, name: string) =>
      pushImage(local, { url: origin.url, token, local: parseImageRef('small:1'), remote: parseImageRef(name), http: { retries: 1 } });

    it('a read-only token cannot upload an object or set a name (403)', async () => {
      await assert.rejects(push(reader, 'team/a:1'), isCode('E_FORBIDDEN'));
      const d = local.index.listObjects()[0]!.digest;
      const r = await fetch(`${origin.url}/v1/objects/${d}`, { method: 'PUT', body: Buffer.from(await local.getEncoded(d)), headers: { authorization: `Bearer ${reader}` } });
      assert.equal(r.status, 403);
      assert.equal((await origin.store.names.list()).length, 0);
    });

    it('write scope is per name prefix; the shared token of today is an admin', async () => {
      const r = await push(writer, 'team/a:1');
      assert.equal(r.ref, 'team/a:1');
      await assert.rejects(push(writer, 'other/a:1'), isCode('E_FORBIDDEN'));
      await assert.rejects(push(undefined, 'team/b:1'), isCode('E_AUTH'));
      await push(ADMIN, 'other/a:1');
      assert.deepEqual((await origin.store.names.list()).map((i) => i.name).sort(), ['other/a', 'team/a']);
    });

    it('a revoked token is refused by the origin (401), an unknown one too', async () => {
      const tokens = new TokenStore(origin.store);
      const id = writer.split('_')[1]!;
      await tokens.revoke(id);
      // another TokenStore revoked it: the origin's own notices within LIST_TTL_MS
      await new Promise((r) => setTimeout(r, LIST_TTL_MS + 50));
      await assert.rejects(push(writer, 'team/c:1'), isCode('E_AUTH'));
      const r = await fetch(`${origin.url}/v1/images`, { headers: { authorization: 'Bearer vmdn_0123456789abcdef_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' } });
      assert.equal(r.status, 401);
    });
  });
});

describe('token records from the store', () => {
  it('a damaged record file is E_STORE, never a crash or a token accepted (seeded fuzz)', async () => {
    const t = tmpDir('vmdn-tokens-fuzz-');
    const store = await LocalStore.open(path.join(t.dir, 's'));
    try {
      const ts = new TokenStore(store);
      const { token } = await ts.create({ read: ['a/'], write: ['b/'], admin: false });
      const file = path.join(store.dir, 'access', 'tokens');
      const good = fs.readFileSync(file);
      let seed = 12345;
      const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
      let refused = 0;
      for (let i = 0; i < 150; i++) {
        const bad = Buffer.from(good);
        for (let k = 0, n = 1 + Math.floor(rnd() * 4); k < n; k++) bad[Math.floor(rnd() * bad.length)] = Math.floor(rnd() * 256);
        fs.writeFileSync(file, bad);
        try {
          const v = await new TokenStore(store).verify(token);
          // a mutation that left the record valid (a scope, a date, spacing) may still accept the token: the store is the admin's
          assert.ok(Array.isArray(v.read) && Array.isArray(v.write) && typeof v.admin === 'boolean');
        } catch (err) {
          assert.ok(err instanceof VmdnError && (err.code === 'E_STORE' || err.code === 'E_AUTH'), String(err));
          refused++;
        }
      }
      assert.ok(refused > 100, `${refused} of 150 damaged files refused`);
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});
