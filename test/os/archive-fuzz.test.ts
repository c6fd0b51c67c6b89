/**
 * Seeded mutation fuzzing of the text parsers of what an OS and its archive
 * say: dpkg status (and md5sums, apt sources lists), a Packages index, a
 * Release file. Each must return what holds together or throw a VmdnError,
 * quickly; anything else is a bug, reported with the seed and case.
 *   VMDN_FUZZ_SEED=<n>   reproduce a run (the seed is printed)
 *   VMDN_FUZZ_CASES=<n>  cases per parser (default: a CI-sized count)
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { installedPackages, parseStanzas } from '../../src/os/dpkg.js';
import { parseMd5sums } from '../../src/os/dpkg-files.js';
import { debKey, parseDeb822Sources, parseSourcesList, scanPackagesIndex, type DebRecord } from '../../src/os/apt-mirror.js';
import { parseRelease } from '../../src/os/release.js';
import { VmdnError } from '../../src/errors.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { fuzzCases } from '../helpers/fuzz.js';
import { mutateBytes, TEXT_TOKENS } from '../helpers/mutate.js';

const SEED = seedFrom('VMDN_FUZZ_SEED');
const CASE_MS = 1000;
const H = (c: string) => c.repeat(64);

const STATUS = `Package: adduser\nStatus: install ok installed\nArchitecture: all\nVersion: 3.134\nConffiles:\n /etc/adduser.conf cc3493ecd2d09837ffdcc3e25fdfff18\nDescription: add users\n more text\n .\n\nPackage: libfoo1\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: 1:2.3-4+b1\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n`;
const MD5SUMS = `cc3493ecd2d09837ffdcc3e25fdfff18  usr/bin/a\nd41d8cd98f00b204e9800998ecf8427e *usr/share/doc/a/copyright\n`;
const LIST = `deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian bookworm main contrib\n# comment\ndeb-src http://x/ y main\n`;
const DEB822 = `Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\nEnabled: yes\n`;
const stanza = (name: string, v: string, h: string) => `Package: ${name}\nVersion: ${v}\nArchitecture: amd64\nDepends: libc6 (>= 2.34)\nFilename: pool/main/${name[0]}/${name}/${name}_${v}_amd64.deb\nSize: 1234\nSHA256: ${h}\nDescription: x\n long\n .\n`;
const PACKAGES = [stanza('alpha', '1.0-1', H('a')), stanza('beta', '2:0.1', H('b')), stanza('gamma', '3', H('c'))].join('\n');
const WANTED = new Set([debKey('alpha', '1.0-1', 'amd64'), debKey('beta', '2:0.1', 'amd64'), debKey('gamma', '3', 'amd64')]);
const RELEASE = `Origin: Debian\nLabel: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 10 Jun 2023 08:51:22 UTC\nValid-Until: Sat, 17 Jun 2023 08:51:22 UTC\nArchitectures: amd64 arm64\nComponents: main contrib\nDescription: Debian 12\nMD5Sum:\n 0123456789abcdef0123456789abcdef 1234 main/binary-amd64/Packages\nSHA256:\n ${H('a')}  8954 main/binary-amd64/Packages.gz\n ${H('b')}  7000 main/binary-amd64/Packages.xz\n ${H('c')} 123456789 contrib/binary-amd64/Packages\n`;
const TOKENS = [...TEXT_TOKENS, 'Package: ', 'Version: ', 'Status: install ok installed', 'SHA256:', 'SHA256: ', 'Size: ', 'Filename: ../../x.deb', 'Valid-Until: ', 'Date: ', ` ${H('f')} 1 x`, 'Suite: ', 'Types: deb', 'URIs: ', '[', ']'];

/** Run `fuzz` on `cases` mutants of `base`; each must finish in CASE_MS, and fail only with a VmdnError. */
async function fuzz(name: string, base: string, ci: number, run: (text: Buffer) => Promise<void> | void): Promise<void> {
  const cases = fuzzCases(ci);
  console.log(`# ${name} fuzz: ${cases} cases, seed ${SEED} (VMDN_FUZZ_SEED=${SEED} to replay)`);
  const r = mulberry32(SEED ^ [...name].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619), 2166136261));
  let refused = 0;
  for (let i = 0; i < cases; i++) {
    const m = mutateBytes(r, Buffer.from(base), TOKENS);
    const t0 = performance.now();
    try {
      await run(m);
    } catch (err) {
      assert.ok(err instanceof VmdnError, `${name} case ${i} (VMDN_FUZZ_SEED=${SEED}): ${err instanceof Error ? err.stack : String(err)}\ninput: ${JSON.stringify(m.toString('latin1').slice(0, 2000))}`);
      refused++;
    }
    const ms = performance.now() - t0;
    assert.ok(ms < CASE_MS, `${name} case ${i} (VMDN_FUZZ_SEED=${SEED}) took ${ms.toFixed(0)} ms`);
  }
  console.log(`# ${name}: ${refused} of ${cases} mutants refused`);
}

it('dpkg status, md5sums and apt sources lists: mutants parse or fail with VmdnError', async () => {
  await fuzz('dpkg status', STATUS, 1500, (b) => {
    for (const p of installedPackages(parseStanzas(b.toString('utf8')))) assert.ok(p.name && p.status.split(/\s+/)[2] === 'installed');
  });
  await fuzz('md5sums', MD5SUMS, 500, (b) => {
    const m = new Map<string, string>();
    parseMd5sums(b.toString('utf8'), m);
    for (const v of m.values()) assert.match(v, /^[0-9a-f]{32}$/);
  });
  await fuzz('sources.list', LIST, 500, (b) => void parseSourcesList(b.toString('utf8')));
  await fuzz('deb822 sources', DEB822, 500, (b) => void parseDeb822Sources(b.toString('utf8')));
});

it('Packages index: mutants give only well-formed records of wanted packages, or a VmdnError', async () => {
  await fuzz('Packages', PACKAGES, 1500, async (b) => {
    const found = new Map<string, DebRecord>();
    await scanPackagesIndex(Readable.from([b.subarray(0, b.length >> 1), b.subarray(b.length >> 1)]), 'fuzz', 'http://x/debian', WANTED, found);
    for (const [k, rec] of found) {
      assert.ok(WANTED.has(k));
      assert.match(rec.sha256, /^[0-9a-f]{64}$/);
      assert.ok(Number.isSafeInteger(rec.size) && rec.size > 0);
      assert.ok(rec.filename.endsWith('.deb') && !rec.filename.split('/').includes('..') && !rec.filename.startsWith('/'), rec.filename);
    }
  });
});

it('Release: mutants parse to bounded entries, or fail with E_UNTRUSTED', async () => {
  await fuzz('Release', RELEASE, 1500, (b) => {
    try {
      const rel = parseRelease(b.toString('utf8'));
      for (const [p, e] of rel.sha256) {
        assert.match(e.sha256, /^[0-9a-f]{64}$/);
        assert.ok(Number.isSafeInteger(e.size) && e.size >= 0);
        assert.ok(!p.startsWith('/') && !p.split('/').includes('..'), p);
      }
      for (const d of [rel.date, rel.validUntil]) assert.ok(d === undefined || !Number.isNaN(d.getTime()));
    } catch (err) {
      if (err instanceof VmdnError) assert.equal(err.code, 'E_UNTRUSTED');
      throw err;
    }
  });
});
