/**
 * `vmdn boot` without booting: the kernel and initrd found in small ext4
 * disks made by mke2fs -d (newest version, links followed inside the image
 * and never out of it, a separate /boot), and the command's refusals (no
 * kernel, files-strategy image, bad options, no qemu), each leaving no
 * temporary directory behind.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { tmpDir } from '../helpers/tmp.js';
import { ext4Disk } from '../helpers/ext4-disk.js';
import { CLI, vmdnOk } from '../helpers/cli.js';
import { openDisk } from '../../src/container/open.js';
import { copyOut, findBootFiles, MAX_KERNEL } from '../../src/nbd/boot-files.js';
import { VmdnError } from '../../src/errors.js';
import { startServe } from '../helpers/serve.js';

const t = tmpDir('vmdn-boot-files-');
after(() => t.cleanup());
let n = 0;

/** A GPT disk whose one ext4 partition holds `files` (path -> content, or {link: target}). */
function diskWith(files: Record<string, string | { link: string }>): string {
  const tree = path.join(t.dir, `tree${++n}`);
  for (const [p, v] of Object.entries(files)) {
    const f = path.join(tree, p);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    if (typeof v === 'string') fs.writeFileSync(f, v);
    else fs.symlinkSync(v.link, f);
  }
  fs.mkdirSync(tree, { recursive: true });
  const disk = path.join(t.dir, `disk${n}.raw`);
  ext4Disk(tree, disk, { sizeMiB: 16 });
  return disk;
}

async function found(disk: string) {
  const d = await openDisk(disk);
  try {
    const f = await findBootFiles(d);
    const out = path.join(t.dir, `copy${++n}`);
    await copyOut(f.kernel, out, MAX_KERNEL);
    return { ...f, kernelPath: f.kernel.path, initrdPath: f.initrd?.path, kernelBytes: fs.readFileSync(out, 'utf8') };
  } finally {
    await d.close();
  }
}

const hasQemu = spawnSync('qemu-system-x86_64', ['--version']).status === 0;

const OS = { '/etc/os-release': 'ID=debian\n' };

describe('vmdn boot: the kernel and initrd inside an image', () => {
  it('the newest /boot/vmlinuz-VERSION (by version, not by name) with its initrd, root on its partition', async () => {
    const f = await found(diskWith({
      ...OS,
      '/boot/vmlinuz-6.1.0-9-amd64': 'kernel 9', '/boot/initrd.img-6.1.0-9-amd64': 'initrd 9',
      '/boot/vmlinuz-6.1.0-10-amd64': 'kernel 10', '/boot/initrd.img-6.1.0-10-amd64': 'initrd 10',
      '/vmlinuz': { link: 'boot/vmlinuz-6.1.0-9-amd64' },
    }));
    assert.equal(f.kernelPath, '/boot/vmlinuz-6.1.0-10-amd64');
    assert.equal(f.initrdPath, '/boot/initrd.img-6.1.0-10-amd64');
    assert.equal(f.version, '6.1.0-10-amd64');
    assert.equal(f.rootPartition, 1);
    assert.equal(f.kernelBytes, 'kernel 10');
  });

  it('links are followed inside the image only: one aimed at a host file is skipped, ".." stops at the image root', async () => {
    const secret = path.join(t.dir, 'host-secret');
    fs.writeFileSync(secret, 'HOST FILE');
    const f = await found(diskWith({
      ...OS,
      // the newest, but its target exists only on the host
      [`/boot/vmlinuz-9.0`]: { link: secret },
      // '..' past the root stays at the root: this is the image's /boot/k8
      '/boot/vmlinuz-8.0': { link: '../../../../../../boot/k8' },
      '/boot/k8': 'kernel 8 inside',
      '/boot/initramfs-8.0.img': 'initrd 8',
    }));
    assert.equal(f.kernelPath, '/boot/vmlinuz-8.0');
    assert.equal(f.kernelBytes, 'kernel 8 inside');
    assert.equal(f.initrdPath, '/boot/initramfs-8.0.img');
  });

  it('without versioned kernels, the /vmlinuz and /initrd.img links', async () => {
    const f = await found(diskWith({ ...OS, '/vmlinuz': { link: 'boot/kernel' }, '/initrd.img': { link: '/boot/initrd' }, '/boot/kernel': 'K', '/boot/initrd': 'I' }));
    assert.equal(f.kernelPath, '/vmlinuz');
    assert.equal(f.initrdPath, '/initrd.img');
    assert.equal(f.version, undefined);
    assert.equal(f.kernelBytes, 'K');
  });

  it('a kernel reachable only through a link out of the image is no kernel', async () => {
    const secret = path.join(t.dir, 'host-kernel');
    fs.writeFileSync(secret, 'HOST KERNEL');
    const d = await openDisk(diskWith({ ...OS, '/vmlinuz': { link: secret }, [`/boot/vmlinuz-1.0`]: { link: `../..${secret}` } }));
    try {
      await assert.rejects(findBootFiles(d), (e: VmdnError) => e.code === 'E_UNSUPPORTED' && /no kernel in this image: looked for \/boot\/vmlinuz-VERSION/.test(e.message));
    } finally {
      await d.close();
    }
  });
});

/** `vmdn boot ARGS --store STORE --json`, its exit status, JSON and the temporary directories its pid left. */
function boot(store: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(process.execPath, [CLI, 'boot', ...args, '--store', store, '--json'], { encoding: 'utf8', env, timeout: 60_000 });
  const left = fs.readdirSync(os.tmpdir()).filter((d) => d.startsWith(`vmdn-nbd-${r.pid}-`));
  let json: any;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = undefined;
  }
  return { status: r.status, json, stderr: r.stderr, left };
}

describe('vmdn boot: refusals', () => {
  const store = path.join(t.dir, 'store');
  before(() => {
    vmdnOk(store, ['import', diskWith(OS), '--name', 'nokernel']);
    vmdnOk(store, ['import', diskWith({ ...OS, '/boot/vmlinuz-1': 'K' }), '--name', 'files', '--strategy', 'files']);
    vmdnOk(store, ['import', diskWith({ ...OS, '/boot/vmlinuz-1': 'not a kernel', '/boot/initrd.img-1': 'not an initrd' }), '--name', 'fake']);
  });

  it('qemu dying before --until matched (here: the "kernel" is not one) is E_IO, and qemu\'s words are on the console', { skip: hasQemu ? false : 'qemu-system-x86_64 not installed' }, () => {
    const r = boot(store, ['fake', '--until', 'login:', '--timeout', '60']);
    assert.equal(r.status, 6, r.stderr);
    assert.match(r.json.error.message, /^qemu exited with status 1 before the console matched \/login:\//);
    assert.match(r.stderr, /^qemu: .*kernel/m);
    assert.deepEqual(r.left, []);
  });

  it('an image without a kernel: E_UNSUPPORTED saying what was looked for, nothing left behind', () => {
    const r = boot(store, ['nokernel']);
    assert.equal(r.status, 3, r.stderr);
    assert.equal(r.json.error.code, 'E_UNSUPPORTED');
    assert.match(r.json.error.message, /no kernel in this image: looked for \/boot\/vmlinuz-VERSION/);
    assert.deepEqual(r.left, []);
  });

  it('an unknown image: E_NOT_FOUND', () => {
    assert.equal(boot(store, ['nosuch']).json.error.code, 'E_NOT_FOUND');
  });

  it('a files-strategy image boots from its rebuilt filesystem: its kernel is found and handed to qemu (here not a kernel: E_IO)', { skip: hasQemu ? false : 'qemu-system-x86_64 not installed' }, () => {
    const r = boot(store, ['files', '--until', 'login:', '--timeout', '60']);
    assert.equal(r.status, 6, r.stderr);
    assert.match(r.stderr, /kernel \/boot\/vmlinuz-1/);
    assert.match(r.stderr, /^qemu: .*kernel/m);
    assert.deepEqual(r.left, []);
  });

  it('--from ORIGIN --peer URL: what the boot reads (kernel, initrd) comes from the peer site, the origin serves the manifest', { skip: hasQemu ? false : 'qemu-system-x86_64 not installed', timeout: 120_000 }, async () => {
    const origin = await startServe(store);
    // site A pulled the image and serves its pull cache
    const acache = path.join(t.dir, 'boot-acache');
    vmdnOk(acache, ['pull', origin.url, 'fake', path.join(t.dir, 'fake-a.raw')]);
    const peer = await startServe(acache);
    const served = async (url: string) => ((await (await fetch(`${url}/stats`)).json()) as { objectRequests: number }).objectRequests;
    try {
      const [o0, p0] = [await served(origin.url), await served(peer.url)];
      const r = boot(path.join(t.dir, 'boot-bcache'), ['fake', '--from', origin.url, '--peer', peer.url, '--no-fill', '--until', 'login:', '--timeout', '60']);
      assert.equal(r.status, 6, r.stderr);
      assert.match(r.stderr, /^qemu: .*kernel/m);
      const [o, p] = [(await served(origin.url)) - o0, (await served(peer.url)) - p0];
      assert.ok(o <= 2, `origin served ${o} objects`);
      assert.ok(p >= 1, `peer served ${p} objects`);
      assert.deepEqual(r.left, []);
    } finally {
      await peer.stop();
      await origin.stop();
    }
  });

  it('usage errors before anything starts', () => {
    for (const args of [
      ['nokernel', '--overlay', path.join(t.dir, 'o.ovl'), '--readonly'],
      ['nokernel', '--cache', t.dir],
      ['nokernel', '--no-fill'],
      ['nokernel', '--until', '('],
      ['nokernel', '--memory', 'lots'],
      ['nokernel', '--cpus', '0'],
      ['nokernel', '--timeout', '-1'],
      ['nokernel', 'stray-argument'],
      ['nokernel', '--peer', 'http://127.0.0.1:9'],
    ]) {
      const r = boot(store, args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    }
    // --record-profile is accepted: the image has no kernel, which is what is refused
    assert.equal(boot(store, ['nokernel', '--record-profile']).json.error.code, 'E_UNSUPPORTED');
    // and the failed run's reads (the kernel search) are not stored as the image's boot profile
    const images = vmdnOk(store, ['images']).images as Array<{ ref: string; profile: string | null }>;
    assert.equal(images.find((i) => i.ref.startsWith('nokernel'))?.profile, null);
  });

  it('no qemu-system-x86_64 on PATH: E_NOT_FOUND naming the package to install', () => {
    const r = boot(store, ['nokernel'], { ...process.env, PATH: '/nonexistent' });
    assert.equal(r.status, 4);
    assert.match(r.json.error.message, /qemu-system-x86_64 not found on PATH: install it \(Debian\/Ubuntu: apt-get install qemu-system-x86/);
  });
});
