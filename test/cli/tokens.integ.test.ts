/**
 * The token commands and --token-file end to end with the real CLI: `vmdn
 * token create/list/revoke`, `vmdn serve --private-prefix`, a push with a
 * write token, pulls with and without a read token, and a revoke taking
 * effect on the running origin.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdn, vmdnOk } from '../helpers/cli.js';
import { prng, writeRaw } from '../helpers/images.js';
import { startServe, type Served } from '../helpers/serve.js';
import { tmpDir } from '../helpers/tmp.js';

describe('vmdn token and --token-file', () => {
  let t: ReturnType<typeof tmpDir>;
  let served: Served;
  const origin = () => path.join(t.dir, 'origin');
  const f = (n: string) => path.join(t.dir, n);

  before(async () => {
    t = tmpDir('vmdn-cli-tokens-');
    writeRaw(f('small.raw'), 4 << 20, [{ offset: 0, data: prng(9, 1 << 20) }]);
    vmdnOk(origin(), ['token', 'create', '--write', 'team/', '--note', 'ci', '--out', f('writer.token')]);
    served = await startServe(origin(), { args: ['--private-prefix', 'team/'] });
  });
  after(async () => {
    await served?.stop();
    t.cleanup();
  });

  it('create prints the token once, list shows scopes but no secret, a token needs a scope', () => {
    const r = vmdnOk(origin(), ['token', 'create', '--read', 'team/', '--expires', '1d']);
    // the secret is base64url: it may hold '_' itself (even start with one), so it is all after the id
    const secret = /^vmdn_[0-9a-f]{16}_(.{43})$/.exec(r.token)?.[1];
    assert.ok(secret, r.token);
    fs.writeFileSync(f('reader.token'), `${r.token}\n`);
    const list = vmdnOk(origin(), ['token', 'list']).tokens;
    assert.equal(list.length, 2);
    assert.ok(list.some((x: { note?: string; write: string[] }) => x.note === 'ci' && x.write[0] === 'team/'));
    assert.ok(!JSON.stringify(list).includes(secret) && !JSON.stringify(list).includes('hash'));
    assert.equal(fs.statSync(f('writer.token')).mode & 0o777, 0o600);
    assert.equal(vmdn(origin(), ['token', 'create']).status, 2);
  });

  it('a private prefix hides a pushed image from pulls without a read token; a revoked token is refused', async () => {
    const local = f('local');
    vmdnOk(local, ['push', f('small.raw'), served.url, '--name', 'team/a:1', '--token-file', f('writer.token')]);
    const anon = vmdn(local, ['pull', served.url, 'team/a:1', f('anon.raw')]);
    assert.equal(anon.status, 4, anon.stderr);
    vmdnOk(f('c1'), ['pull', served.url, 'team/a:1', f('reader.raw'), '--token-file', f('reader.token')]);
    assert.ok(fs.readFileSync(f('reader.raw')).equals(fs.readFileSync(f('small.raw'))));
    const id = fs.readFileSync(f('reader.token'), 'utf8').split('_')[1]!;
    vmdnOk(origin(), ['token', 'revoke', id]);
    await new Promise((r) => setTimeout(r, 2200));
    const revoked = vmdn(f('c2'), ['pull', served.url, 'team/a:1', f('revoked.raw'), '--token-file', f('reader.token')]);
    assert.equal(revoked.status, 7, revoked.stderr);
  });
});
