/**
 * qcow2 backing files name paths chosen by whoever made the image. Through
 * the real CLI, with images made by qemu-img: a backing file outside the
 * image's directory (absolute, "../", a symlink pointing out) or not a
 * regular file (a device) is refused with E_BACKING (exit 3) by every command
 * that opens images, unless --allow-backing names it.
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
import { sh } from '../helpers/cli.js';
import { prng, writeRaw } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { runCli } from './run-async.js';

const MiB = 1 << 20;

describe('qcow2 backing files outside the image directory', () => {
  const t = tmpDir('vmdn-backing-');
  const at = (...p: string[]) => path.join(t.dir, ...p);
  const secret = at('host', 'hostsecret.txt');
  const store = at('store');
  const evil: Record<string, string> = {};
  let origin: Origin;
  let originStore: LocalStore;
  let url: string;

  before(async () => {
    fs.mkdirSync(at('host'));
    fs.mkdirSync(at('img'));
    // what must not leak: a host file with recognisable content, 1 MiB like the images
    writeRaw(secret, MiB, [{ offset: 0, data: Buffer.from('HOST SECRET '.repeat(1000)) }]);
    const mk = (name: string, backing: string, unsafe = false) => {
      evil[name] = at('img', `${name}.qcow2`);
      sh('qemu-img', ['create', '-q', '-f', 'qcow2', ...(unsafe ? ['-u'] : []), '-b', backing, '-F', 'raw', evil[name]!, '1M']);
    };
    mk('absolute', secret);
    mk('dotdot', '../host/hostsecret.txt');
    fs.symlinkSync('../host/hostsecret.txt', at('img', 'link.raw'));
    mk('symlink', 'link.raw');
    mk('devzero', '/dev/zero', true);
    // a block device node beside the image (loop0's numbers): a device, even in the image's own directory
    sh('mknod', [at('img', 'blockdev'), 'b', '7', '0']);
    mk('blockdev', 'blockdev', true);
    // the allowed case: a plain file beside the image
    fs.copyFileSync(secret, at('img', 'base.raw'));
    mk('beside', 'base.raw');

    // an origin holding an image the seeds could serve, for pull --seed
    const src = at('seeded.raw');
    writeRaw(src, MiB, [{ offset: 0, data: prng(5, MiB) }]);
    originStore = await LocalStore.open(at('origin'));
    await importImageFile(originStore, src, parseImageRef('seeded'), { chunker: DEFAULT_CDC });
    origin = new Origin(originStore, {});
    url = await origin.listen('127.0.0.1', 0);
  });
  after(async () => {
    await origin.close();
    await originStore.close();
    t.cleanup();
  });

  const cases = ['absolute', 'dotdot', 'symlink', 'devzero', 'blockdev'];
  for (const name of cases) {
    it(`${name}: import, inspect, ls, cat, diff and pull --seed refuse it with E_BACKING`, async () => {
      const img = evil[name]!;
      const runs: Array<[string, string[]]> = [
        ['import', ['import', img, '--name', `evil-${name}`, '--store', store, '--json']],
        ['inspect', ['inspect', img, '--store', store, '--json']],
        ['ls', ['ls', img, '/', '--store', store, '--json']],
        ['cat', ['cat', img, '/x', '--store', store, '--json']],
        ['diff', ['diff', img, img, '--layer', 'disk', '--store', store, '--json']],
        ['pull --seed', ['pull', url, 'seeded', at(`pulled-${name}.raw`), '--cache', at(`cache-${name}`), '--seed', img, '--json']],
      ];
      for (const [what, args] of runs) {
        const r = await runCli(args, { timeoutMs: 60_000 });
        assert.equal(r.json?.error?.code, 'E_BACKING', `${what}: ${r.stdout}${r.stderr}`);
        assert.equal(r.status, 3, what);
        assert.ok(!r.stdout.includes('HOST SECRET'), what);
      }
      assert.ok(!fs.existsSync(at(`pulled-${name}.raw`)));
      // nothing of it reached the store: no image under that name
      const images = await runCli(['images', '--store', store, '--json']);
      assert.ok(!JSON.stringify(images.json ?? {}).includes(`evil-${name}`));
    });
  }

  it('the human message says which file and how to trust it', async () => {
    const r = await runCli(['import', evil.dotdot!, '--name', 'x', '--store', store]);
    assert.equal(r.status, 3);
    assert.match(r.stderr, /E_BACKING.*outside the image's directory.*--allow-backing/);
  });

  it('a plain file beside the image is opened; --allow-backing trusts one outside it', async () => {
    const ok = await runCli(['import', evil.beside!, '--name', 'beside', '--store', store, '--json']);
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    for (const name of ['absolute', 'dotdot', 'symlink']) {
      const r = await runCli(['import', evil[name]!, '--name', `trusted-${name}`, '--store', store, '--json', '--allow-backing', name === 'symlink' ? at('img', 'link.raw') : secret]);
      assert.equal(r.status, 0, `${name}: ${r.stdout}${r.stderr}`);
      const out = at(`trusted-${name}.raw`);
      const e = await runCli(['export', `trusted-${name}`, out, '--store', store, '--json']);
      assert.equal(e.status, 0, e.stdout + e.stderr);
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(secret)), name);
    }
    // trusting another file does not trust this one
    const other = await runCli(['inspect', evil.absolute!, '--store', store, '--json', '--allow-backing', at('img', 'base.raw')]);
    assert.equal(other.json?.error?.code, 'E_BACKING');
  });
});
