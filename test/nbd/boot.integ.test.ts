/**
 * The one real boot of the test suite: the corpus image `base`, stored on a
 * real `vmdn serve` origin, booted by `vmdn boot --from` (qemu, TCG here) to
 * the login prompt on ttyS0. The boot fetches only part of the image, the
 * cache it leaves verifies, and nothing (temporary files, qemu) outlives the
 * command. Skipped with the reason where the corpus or qemu is missing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { tmpDir } from '../helpers/tmp.js';
import { CLI, vmdnOk } from '../helpers/cli.js';
import { corpusDir } from '../helpers/corpus.js';
import { startServe, type Served } from '../helpers/serve.js';

const corpus = corpusDir();
const qemu = spawnSync('qemu-system-x86_64', ['--version']).status === 0;
const skip = corpus.reason ?? (qemu ? false : 'qemu-system-x86_64 not installed (scripts/ensure-debian-tools.mjs installs it)');
if (skip) console.log(`# SKIP vmdn boot of corpus base: ${skip}`);

/** A loaded 2-core machine boots `base` in minutes, not the ~25 s of an idle one. */
const BOOT_TIMEOUT_S = 300;

describe('vmdn boot --from an origin: corpus base to the login prompt', { skip }, () => {
  const t = tmpDir('vmdn-boot-');
  const originStore = path.join(t.dir, 'origin');
  const cache = path.join(t.dir, 'cache');
  let origin: Served;
  let storedBytes = 0;

  before(async () => {
    vmdnOk(originStore, ['import', path.join(corpus.dir!, 'base.qcow2'), '--name', 'base']);
    storedBytes = vmdnOk(originStore, ['images']).images.find((i: { ref: string }) => i.ref === 'base:latest').storedBytes;
    origin = await startServe(originStore);
  });
  after(async () => {
    await origin?.stop();
    t.cleanup();
  });

  it('reaches login: on ttyS0, fetching only what the boot reads', { timeout: (BOOT_TIMEOUT_S + 60) * 1000 }, async () => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CLI, 'boot', 'base', '--from', origin.url, '--cache', cache, '--no-fill', '--until', 'login:', '--timeout', String(BOOT_TIMEOUT_S), '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let console_ = '';
    child.stdout.on('data', (b) => (stdout += b));
    child.stderr.on('data', (b) => (console_ += b));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    const ms = Date.now() - t0;
    assert.equal(code, 0, `exit ${code}; console tail:\n${console_.slice(-3000)}\n${stdout}`);
    const r = JSON.parse(stdout);
    assert.equal(r.matched, true);
    // the prompt as the guest printed it (the match may come before its trailing space)
    assert.match(console_, /^vmdn-corpus login:/m);
    assert.equal(r.append, 'root=/dev/vda1 rw console=ttyS0');
    assert.match(r.kernel.path, /^\/boot\/vmlinuz-6\./);
    assert.ok(r.kernel.bytes > 1 << 20 && r.initrd.bytes > 1 << 20, JSON.stringify(r));
    assert.ok(r.msToFirstRead > 0 && r.msToFirstRead < r.msToMatch, JSON.stringify(r));
    const c = r.counters;
    // the kernel and initrd, and what the boot read; not the whole image
    assert.ok(c.demandBytes > 10 << 20, JSON.stringify(c));
    assert.ok(c.demandBytes < 0.3 * storedBytes, `fetched ${c.demandBytes} of ${storedBytes} stored bytes`);
    assert.equal(c.prefilledBytes, 0);
    assert.equal(c.demandErrors, 0);
    console.log(`# boot of base to login: ${ms} ms in all (kernel copied out at ${r.msToKernel} ms, first guest read at ${r.msToFirstRead} ms, login: at ${r.msToMatch} ms, ${r.accel}); fetched ${c.demandBytes} bytes in ${c.demandObjects} objects of ${storedBytes} stored (${((100 * c.demandBytes) / storedBytes).toFixed(1)}%), guest read ${c.guestBytesRead} bytes`);
    // what was fetched is verified and complete as far as it goes
    const v = vmdnOk(cache, ['verify']);
    assert.equal(v.ok, true, JSON.stringify(v.problems));
    assert.equal(v.objectsChecked, c.demandObjects + 1);
    // nothing outlives the command: its temporary directory and its qemu are gone
    assert.deepEqual(fs.readdirSync(os.tmpdir()).filter((d) => d.startsWith(`vmdn-nbd-${child.pid}-`)), []);
    // (qemu's command line names the socket in that directory)
    const qemus = spawnSync('pgrep', ['-a', '-f', `vmdn-nbd-${child.pid}-boot`], { encoding: 'utf8' });
    assert.equal(qemus.stdout.trim(), '');
  });
});
