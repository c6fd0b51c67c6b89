/**
 * Release files (the signed payload of InRelease): the fields vmdn trusts,
 * the bounds on what it reads, and when a verified Release is still refused
 * (another suite's, or past its Valid-Until).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkRelease, parseRelease } from '../../src/os/release.js';
import { VmdnError } from '../../src/errors.js';
import { parseDeb822Sources, parseSourcesList } from '../../src/os/apt-mirror.js';

const H = 'ab'.repeat(32);
const GOOD = `Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 10 Jun 2023 08:51:22 UTC\nValid-Until: Sat, 17 Jun 2023 08:51:22 UTC\nSHA256:\n ${H}  1234 main/binary-amd64/Packages.xz\n ${H.toUpperCase()} 99 main/binary-amd64/Packages.gz\n`;
const untrusted = (re: RegExp) => (e: unknown) => e instanceof VmdnError && e.code === 'E_UNTRUSTED' && re.test(e.message);

describe('Release files', () => {
  it('parses suite, codename, dates and the SHA256 entries', () => {
    const r = parseRelease(GOOD);
    assert.equal(r.suite, 'stable');
    assert.equal(r.codename, 'bookworm');
    assert.equal(r.validUntil?.toISOString(), '2023-06-17T08:51:22.000Z');
    assert.deepEqual(r.sha256.get('main/binary-amd64/Packages.xz'), { sha256: H, size: 1234 });
    assert.deepEqual(r.sha256.get('main/binary-amd64/Packages.gz'), { sha256: H, size: 99 });
  });

  it('refuses malformed or out-of-bounds content', () => {
    const cases: Array<[string, RegExp]> = [
      [GOOD.replace('  1234 main', ' -1 main'), /hash size path/],
      [GOOD.replace(` ${H.toUpperCase()} 99 main/binary-amd64/Packages.gz`, ` ${H} 1 main/binary-amd64/Packages.xz`), /listed twice/],
      [GOOD.replace('main/binary-amd64/Packages.gz', '../../etc/passwd'), /outside the suite/],
      [GOOD.replace('Codename: bookworm', 'Suite: other'), /appears twice/],
      [GOOD.replace('Date: Sat', 'Date: <script>'), /not a date/],
      [GOOD.replace(' 99 ', ' 99999999999999999 '), /hash size path|claims/],
      [` ${H} 1 x\n`, /continues no field/],
      [`Suite: ${'x'.repeat(20_000)}\n`, /longer than/],
      ['garbage\n', /Field: value/],
    ];
    for (const [text, re] of cases) assert.throws(() => parseRelease(text), untrusted(re), re.source);
  });

  it('reads one stanza: what follows a blank line is ignored', () => {
    assert.equal(parseRelease(`${GOOD}\nSuite: evil\n`).suite, 'stable');
  });

  it('a verified Release is refused for another suite or past its Valid-Until; without Valid-Until it does not expire', () => {
    const r = parseRelease(GOOD);
    const before = new Date('2023-06-12T00:00:00Z');
    checkRelease(r, 'bookworm', before, 'x');
    checkRelease(r, 'stable', before, 'x');
    assert.throws(() => checkRelease(r, 'trixie', before, 'x'), untrusted(/for stable\/bookworm, not trixie/));
    assert.throws(() => checkRelease(r, 'bookworm', new Date('2023-06-18T00:00:00Z'), 'x'), untrusted(/expired on 2023-06-17/));
    checkRelease(parseRelease(GOOD.replace(/Valid-Until.*\n/, '')), 'bookworm', new Date('2099-01-01T00:00:00Z'), 'x');
  });

  it('a host source\'s signed-by keyring file is kept (an inline key block is not a file)', () => {
    assert.deepEqual(parseSourcesList('deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://m/debian bookworm main\ndeb http://m/debian bookworm-updates main\n'), [
      { uri: 'http://m/debian', suites: ['bookworm'], components: ['main'], keyring: '/usr/share/keyrings/x.gpg' },
      { uri: 'http://m/debian', suites: ['bookworm-updates'], components: ['main'] },
    ]);
    const d = parseDeb822Sources('Types: deb\nURIs: http://m/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://n/\nSuites: s\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n xyz\n');
    assert.equal(d[0]!.keyring, '/usr/share/keyrings/debian-archive-keyring.gpg');
    assert.equal(d[1]!.keyring, undefined);
  });
});
