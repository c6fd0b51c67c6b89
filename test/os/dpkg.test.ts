/** Parsers for dpkg status stanzas, os-release quoting and /etc/hostname, on literal inputs. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { parseStanzas, installedPackages } from '../../src/os/dpkg.js';
import { parseOsRelease } from '../../src/os/os-release.js';
import { parseHostname } from '../../src/os/hostname.js';

const STATUS = `Package: adduser
Status: install ok installed
Architecture: all
Version: 3.134
Conffiles:
 /etc/adduser.conf cc3493ecd2d09837ffdcc3e25fdfff18
Description: add and remove users and groups
 This package includes the 'adduser' and 'deluser' commands.
 .
 Package: not-a-field-but-a-continuation

package: libfoo1
STATUS: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 1:2.3-4+b1\r

Package: gone
Status: deinstall ok config-files
Version: 1.0
Architecture: amd64


Package: held
Status: hold ok installed
Version: 2.0
Architecture: arm64
Description: x
\tcontinuation with a tab
`;

it('status stanzas: continuation lines, case-insensitive fields, CRLF, blank runs', () => {
  const warnings: string[] = [];
  const s = parseStanzas(STATUS, warnings);
  assert.equal(s.length, 4);
  assert.equal(s[0].get('conffiles'), '\n/etc/adduser.conf cc3493ecd2d09837ffdcc3e25fdfff18');
  assert.match(s[0].get('description')!, /\nPackage: not-a-field-but-a-continuation$/);
  assert.equal(s[3].get('description'), 'x\ncontinuation with a tab');
  assert.deepEqual(installedPackages(s).map((p) => [p.name, p.version, p.arch]), [
    ['adduser', '3.134', 'all'], ['libfoo1', '1:2.3-4+b1', 'amd64'], ['held', '2.0', 'arm64'],
  ]);
  assert.deepEqual(warnings, []);
});

it('status stanzas: junk lines are warnings, not crashes', () => {
  const warnings: string[] = [];
  const s = parseStanzas(' orphan continuation\nno colon here\nPackage: a\nStatus: install ok installed\n', warnings);
  assert.equal(installedPackages(s).length, 1);
  assert.equal(warnings.length, 2);
});

it('os-release quoting rules', () => {
  const r = parseOsRelease([
    '# comment', 'NAME="Debian GNU/Linux"', "ID=debian", "VERSION_ID='12'",
    'PRETTY_NAME="A \\"quoted\\" \\$name with \\\\ and \\`tick\\`"', "SINGLE='no \\escapes $here'",
    'UNQUOTED=a\\ b', 'SPACED=one two', 'bad line', '=novalue', '  INDENTED=yes  ', 'EMPTY=',
  ].join('\n'));
  assert.deepEqual(r, {
    NAME: 'Debian GNU/Linux', ID: 'debian', VERSION_ID: '12', PRETTY_NAME: 'A "quoted" $name with \\ and `tick`',
    SINGLE: 'no \\escapes $here', UNQUOTED: 'a b', SPACED: 'one', INDENTED: 'yes', EMPTY: '',
  });
});

it('hostname file', () => {
  assert.equal(parseHostname('# set by cloud-init\n\nvmdn-corpus\n'), 'vmdn-corpus');
  assert.equal(parseHostname(''), null);
  assert.equal(parseHostname('x'.repeat(300)), null);
});
