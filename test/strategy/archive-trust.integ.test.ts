/**
 * The packages strategy trusts a Debian archive only through its signed
 * InRelease: a test archive on 127.0.0.1 signs each suite with a key made for
 * the test. A good archive imports; an InRelease altered after signing,
 * unsigned, or signed by another key, and an index (with its .deb) swapped by
 * the mirror, are each refused with E_UNTRUSTED, and nothing is stored.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdnOk } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';
import { buildDeb, buildImage, vmdnAsync, vmdnAsyncOk, type BuiltDeb, type PkgSpec } from '../helpers/debs.js';
import { DebArchive } from '../helpers/deb-archive.js';
import { ArchiveKey } from '../helpers/archive-key.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { verifyClearsigned } from '../../src/os/archive-trust.js';
import { VmdnError } from '../../src/errors.js';

const SPECS: PkgSpec[] = [
  { name: 'alpha', version: '1.0-1', arch: 'amd64', compress: 'xz', files: [{ path: 'usr/bin/alpha', data: prng(11, 30_000), mode: 0o755 }] },
  { name: 'beta', version: '2.0-1', arch: 'amd64', compress: 'gzip', files: [{ path: 'usr/share/beta/b.dat', data: prng(12, 20_000) }] },
];

async function objects(store: string): Promise<number> {
  if (!fs.existsSync(store)) return 0;
  const s = await LocalStore.open(store);
  try {
    return s.index.totals().objects;
  } finally {
    await s.close();
  }
}

describe('packages strategy: the archive is trusted only through its signed InRelease', { timeout: 180_000 }, () => {
  let t: ReturnType<typeof tmpDir>;
  let archive: DebArchive;
  const debs: BuiltDeb[] = [];
  const disk = () => path.join(t.dir, 'img.raw');
  const savedCache = process.env.VMDN_DEB_CACHE;
  const importArgs = (keyring: string | undefined, name: string) => ['import', disk(), '--name', name, '--strategy', 'packages', '--apt-source', archive.url, '--fallback', 'error', ...(keyring ? ['--keyring', keyring] : [])];

  /** An import that must fail with `code`, matching `message`, leaving a fresh store empty and no .deb fetched. */
  async function refused(label: string, code: string, message: RegExp, keyring: string | null = archive.keyring): Promise<void> {
    const store = path.join(t.dir, `store-${label}`);
    const r = await vmdnAsync(store, importArgs(keyring ?? undefined, `img:${label}`));
    assert.equal(r.json?.error?.code, code, `${label}: ${r.stdout}${r.stderr}`);
    assert.equal(r.status, 11, label);
    assert.match(r.json.error.message, message, label);
    assert.equal(await objects(store), 0, `${label}: objects stored by a refused import`);
    if (fs.existsSync(store)) assert.deepEqual(vmdnOk(store, ['images']).images, [], label);
    assert.deepEqual(archive.poolRequests(), [], `${label}: a .deb was fetched from an untrusted index`);
  }

  before(async () => {
    delete process.env.VMDN_DEB_CACHE;
    t = tmpDir('vmdn-archive-trust-');
    for (const s of SPECS) debs.push(buildDeb(s, t.dir));
    archive = await DebArchive.start();
    for (const d of debs) archive.add(d);
    buildImage(disk(), { packages: debs }, t.dir);
  });

  after(async () => {
    if (savedCache !== undefined) process.env.VMDN_DEB_CACHE = savedCache;
    await archive?.close();
    t?.cleanup();
  });

  it('a good archive imports, with a binary or an armored keyring', async () => {
    const store = path.join(t.dir, 'store-good');
    const r = await vmdnAsyncOk(store, importArgs(archive.keyring, 'img:good'));
    assert.deepEqual(r.packages[0].missing, []);
    assert.equal(archive.poolRequests().length, 2);
    archive.reset();
    const asc = path.join(t.dir, 'archive.asc');
    fs.writeFileSync(asc, execArmored(archive.keyring));
    await vmdnAsyncOk(store, importArgs(asc, 'img:asc'));
  });

  it('an InRelease altered after signing, unsigned, or signed by another key is refused; so is Debian\'s keyring for this archive', async () => {
    for (const mode of ['altered', 'unsigned', 'other-key'] as const) {
      archive.reset();
      archive.signing = mode;
      await refused(mode, 'E_UNTRUSTED', mode === 'altered' ? /InRelease: a bad signature/ : mode === 'unsigned' ? /InRelease: not a clearsigned message/ : /InRelease: signed by no key of/);
    }
    archive.reset();
    if (fs.existsSync('/usr/share/keyrings/debian-archive-keyring.gpg')) await refused('debian-keyring', 'E_UNTRUSTED', /signed by no key of \/usr\/share\/keyrings\/debian-archive-keyring\.gpg/, null);
    const missing = path.join(t.dir, 'no-such-keyring.gpg');
    const r = await vmdnAsync(path.join(t.dir, 'store-nokey'), importArgs(missing, 'img:nokey'));
    assert.equal(r.json?.error?.code, 'E_USAGE', r.stdout + r.stderr);
    assert.match(r.json.error.message, /cannot read the archive keyring/);
  });

  it('a mirror that swaps a .deb and edits the index to match is refused before the .deb is fetched', async () => {
    archive.reset();
    const evil = buildDeb({ ...SPECS[0]!, files: [{ path: 'usr/bin/alpha', data: Buffer.from('#!/bin/sh\necho owned\n'), mode: 0o755 }] }, path.join(t.dir, 'evil'));
    archive.substitute('alpha', '1.0-1', evil.bytes);
    await refused('index', 'E_UNTRUSTED', /Packages\.gz: .* the signed Release says .*did not sign/);
  });

  it('a tampered .deb (index intact) is refused by its SHA-256, nothing stored', async () => {
    archive.reset();
    archive.tamper('beta', '2.0-1');
    const store = path.join(t.dir, 'store-deb');
    const r = await vmdnAsync(store, importArgs(archive.keyring, 'img:deb'));
    assert.equal(r.json?.error?.code, 'E_CORRUPT_OBJECT', r.stdout + r.stderr);
    assert.equal(await objects(store), 0);
  });

  it('gpgv\'s verdict is on the signed text only: text before or after the clearsigned message is refused', async () => {
    const key = ArchiveKey.generate();
    try {
      const signed = key.clearsign('Suite: s\nCodename: s\n');
      assert.equal(await verifyClearsigned(signed, key.keyring, 'test'), 'Suite: s\nCodename: s\n');
      for (const bad of [Buffer.concat([Buffer.from('Suite: evil\n\n'), signed]), Buffer.concat([signed, Buffer.from('Suite: evil\n')]), Buffer.concat([signed, signed])]) {
        await assert.rejects(verifyClearsigned(bad, key.keyring, 'test'), (e: unknown) => e instanceof VmdnError && e.code === 'E_UNTRUSTED');
      }
    } finally {
      key.remove();
    }
  });
});

function execArmored(keyring: string): Buffer {
  // the armored form of the same public key, as a Debian *.asc keyring is
  const dir = fs.mkdtempSync(path.join(path.dirname(keyring), 'asc-'));
  try {
    return ArchiveKey.armorOf(keyring, dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
