/** HTTP API helpers: routes, Range parsing, token check, listen addresses, sizes. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseListen, parseRange, refPath, route, tokenMatches } from '../../src/net/wire/http-api.js';
import { parseSize } from '../../src/util/size.js';

const D = 'ab'.repeat(32);

describe('http api', () => {
  it('routes objects, names with slashes and tags, and refuses the rest', () => {
    assert.deepEqual(route(`/v1/objects/${D}`), { kind: 'object', digest: D });
    assert.deepEqual(route(`/v1/profiles/${D}`), { kind: 'profile', manifest: D });
    assert.equal(route(`/v1/profiles/${D}x`), undefined);
    assert.deepEqual(route('/v1/objects/missing'), { kind: 'missing' });
    assert.deepEqual(route('/v1/images'), { kind: 'images' });
    assert.deepEqual(route('/v1/images/debian/bookworm/12.1'), { kind: 'ref', ref: { name: 'debian/bookworm', tag: '12.1' } });
    assert.deepEqual(route(refPath({ name: 'a/b', tag: 'x' })), { kind: 'ref', ref: { name: 'a/b', tag: 'x' } });
    assert.equal(route(`/v1/objects/${D.toUpperCase()}`), undefined);
    assert.equal(route('/v1/objects/../../etc/passwd'), undefined);
    assert.equal(route('/v1/images/UPPER/x'), undefined);
    assert.equal(route('/v1/images/onlyname'), undefined);
    assert.equal(route('/'), undefined);
    assert.equal(route('/v1/images/%E0%A4%A/x'), undefined, 'malformed escape');
  });

  it('parses single byte ranges like RFC 9110', () => {
    assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange('bytes=-1000', 100), { start: 0, end: 99 });
    assert.deepEqual(parseRange('bytes=50-1000', 100), { start: 50, end: 99 });
    assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
    assert.equal(parseRange('bytes=-0', 100), 'unsatisfiable');
    assert.equal(parseRange(undefined, 100), null);
    assert.equal(parseRange('bytes=5-1', 100), null, 'invalid: ignored, whole body');
    assert.equal(parseRange('bytes=0-1,5-6', 100), null, 'multi-range: whole body');
    assert.equal(parseRange('items=0-1', 100), null);
    assert.equal(parseRange('bytes=-', 100), null);
  });

  it('accepts only the exact bearer token', () => {
    assert.equal(tokenMatches('Bearer s3cret', 's3cret'), true);
    assert.equal(tokenMatches('bearer s3cret ', 's3cret'), true);
    assert.equal(tokenMatches('Bearer s3cre', 's3cret'), false);
    assert.equal(tokenMatches('Bearer s3cret2', 's3cret'), false);
    assert.equal(tokenMatches('Basic s3cret', 's3cret'), false);
    assert.equal(tokenMatches(undefined, 's3cret'), false);
    assert.equal(tokenMatches('Bearer ', ''), false, 'no token configured: nothing matches');
    assert.equal(tokenMatches('Bearer x', undefined), false);
  });

  it('parses listen addresses and sizes', () => {
    assert.deepEqual(parseListen('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(parseListen('[::1]:0'), { host: '::1', port: 0 });
    assert.deepEqual(parseListen(':9000'), { host: '127.0.0.1', port: 9000 });
    assert.throws(() => parseListen('localhost'), /HOST:PORT/);
    assert.throws(() => parseListen('h:70000'), /out of range/);
    assert.equal(parseSize('10G'), 10 * 2 ** 30);
    assert.equal(parseSize('512M'), 512 * 2 ** 20);
    assert.equal(parseSize('1.5GiB'), 1.5 * 2 ** 30);
    assert.equal(parseSize('4096'), 4096);
    assert.throws(() => parseSize('lots'), /invalid size/);
  });
});
