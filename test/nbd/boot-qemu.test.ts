/** `vmdn boot`'s plain parts: qemu's command line, the kernel's, the version order, the accelerator and the binary look-up. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { findQemu, kernelCommandLine, pickAccel, qemuArgs, type QemuPlan } from '../../src/nbd/boot-qemu.js';
import { compareVersions } from '../../src/nbd/boot-files.js';
import { untilPattern } from '../../src/cli/commands/boot.js';
import { VmdnError } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';

const plan = (p: Partial<QemuPlan> = {}): QemuPlan => ({
  kernel: '/t/vmlinuz', initrd: '/t/initrd.img', append: 'root=/dev/vda1 rw console=ttyS0', memoryMiB: 1024, cpus: 1,
  socket: '/t/nbd.sock', readOnly: false, accel: 'tcg', extra: [], ...p,
});

/** The value after `flag` (the first one). */
const after = (args: string[], flag: string) => args[args.indexOf(flag) + 1];

describe('vmdn boot: the qemu command line', () => {
  it('boots the kernel directly, the disk over NBD on virtio, the console on stdio, no network', () => {
    assert.deepEqual(qemuArgs(plan()), [
      '-machine', 'accel=tcg', '-m', '1024', '-smp', '1', '-kernel', '/t/vmlinuz', '-initrd', '/t/initrd.img',
      '-append', 'root=/dev/vda1 rw console=ttyS0', '-drive', 'file=nbd+unix:///?socket=/t/nbd.sock,format=raw,if=virtio',
      '-nographic', '-nic', 'none',
    ]);
  });

  it('KVM brings the host CPU; read-only marks the drive; no initrd, no -initrd', () => {
    const a = qemuArgs(plan({ accel: 'kvm', readOnly: true, initrd: undefined, memoryMiB: 2048, cpus: 4 }));
    assert.equal(after(a, '-machine'), 'accel=kvm');
    assert.equal(after(a, '-cpu'), 'host');
    assert.equal(after(a, '-m'), '2048');
    assert.equal(after(a, '-smp'), '4');
    assert.ok(after(a, '-drive')!.endsWith(',readonly=on'));
    assert.ok(!a.includes('-initrd'));
  });

  it('a comma in the socket path is doubled (qemu splits option values at commas)', () => {
    assert.equal(after(qemuArgs(plan({ socket: '/tmp/a,b/nbd.sock' })), '-drive'), 'file=nbd+unix:///?socket=/tmp/a,,b/nbd.sock,format=raw,if=virtio');
  });

  it('the user\'s arguments come last, and one that sets up a network replaces -nic none', () => {
    const a = qemuArgs(plan({ extra: ['-nic', 'user', '-display', 'none'] }));
    assert.deepEqual(a.slice(-4), ['-nic', 'user', '-display', 'none']);
    assert.equal(a.filter((x) => x === '-nic').length, 1);
    assert.ok(!qemuArgs(plan({ extra: ['-device', 'virtio-net-pci,netdev=n0', '-netdev', 'user,id=n0'] })).includes('none'));
  });

  it('the kernel command line: root on the partition found, rw or ro, ttyS0, then the extra arguments', () => {
    assert.equal(kernelCommandLine(1, false), 'root=/dev/vda1 rw console=ttyS0');
    assert.equal(kernelCommandLine(3, true, ' quiet  systemd.unit=rescue.target '), 'root=/dev/vda3 ro console=ttyS0 quiet  systemd.unit=rescue.target');
    // a filesystem on the whole disk
    assert.equal(kernelCommandLine(0, false), 'root=/dev/vda rw console=ttyS0');
  });
});

describe('vmdn boot: versions, accelerator, qemu binary, --until', () => {
  it('kernel versions sort like sort -V (6.1.0-10 is newer than 6.1.0-9)', () => {
    const v = ['6.1.0-9-amd64', '6.1.0-10-amd64', '5.10.0-28-amd64', '6.1.0-10-cloud-amd64', '6.10.1'];
    assert.deepEqual([...v].sort(compareVersions), ['5.10.0-28-amd64', '6.1.0-9-amd64', '6.1.0-10-amd64', '6.1.0-10-cloud-amd64', '6.10.1']);
    assert.equal(compareVersions('1.2', '1.2'), 0);
  });

  it('TCG when the KVM device cannot be opened', () => {
    const r = pickAccel('/nonexistent/kvm');
    assert.equal(r.accel, 'tcg');
    assert.match(r.why!, /\/nonexistent\/kvm: ENOENT/);
  });

  it('KVM only if qemu can set up a KVM vCPU: a qemu that aborts (a nested host\'s /dev/kvm) means TCG, with its words', () => {
    const t = tmpDir('vmdn-kvm-probe-');
    try {
      const dev = path.join(t.dir, 'kvm');
      fs.writeFileSync(dev, '');
      const script = (name: string, body: string) => {
        const f = path.join(t.dir, name);
        fs.writeFileSync(f, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
        return f;
      };
      const aborts = script('aborts', 'echo \'{"QMP": {}}\'; echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; exit 134');
      assert.deepEqual(pickAccel(dev, aborts), { accel: 'tcg', why: 'KVM unusable (qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69)' });
      // a working one answers query-status on QMP after reading the probe's commands
      const works = script('works', 'case "$*" in *"-accel kvm"*"-S"*) ;; *) exit 1;; esac; cat >/dev/null; echo \'{"return": {"status": "prelaunch", "running": false}}\'');
      assert.deepEqual(pickAccel(dev, works), { accel: 'kvm' });
      assert.equal(pickAccel(dev, path.join(t.dir, 'missing')).accel, 'tcg');
    } finally {
      t.cleanup();
    }
  });

  it('the real qemu: when the probe says KVM, a KVM machine really starts', { skip: spawnSync('qemu-system-x86_64', ['--version']).status === 0 ? false : 'no qemu-system-x86_64' }, (t) => {
    const r = pickAccel();
    // nothing to check without KVM: reported as skipped, not as a pass
    if (r.accel === 'tcg') return t.skip(`the probe says TCG here (${r.why})`);
    const q = spawnSync('qemu-system-x86_64', ['-accel', 'kvm', '-cpu', 'host', '-display', 'none', '-nodefaults', '-m', '16', '-qmp', 'stdio'], { input: '{"execute":"qmp_capabilities"}\n{"execute":"cont"}\n{"execute":"quit"}\n', encoding: 'utf8', timeout: 10_000 });
    assert.equal(q.status, 0, q.stderr);
  });

  it('finds qemu on PATH, or says what to install', () => {
    const t = tmpDir('vmdn-boot-path-');
    try {
      const bin = path.join(t.dir, 'qemu-system-x86_64');
      fs.writeFileSync(bin, '#!/bin/sh\n', { mode: 0o755 });
      assert.equal(findQemu(`/nonexistent${path.delimiter}${t.dir}`), bin);
      assert.throws(() => findQemu('/nonexistent'), (e: VmdnError) => e.code === 'E_NOT_FOUND' && /apt-get install qemu-system-x86/.test(e.message));
      // a file that cannot run is not qemu
      fs.chmodSync(bin, 0o644);
      assert.throws(() => findQemu(t.dir), (e: VmdnError) => e.code === 'E_NOT_FOUND');
    } finally {
      t.cleanup();
    }
  });

  it('--until is checked as a regular expression before anything starts', () => {
    assert.ok(untilPattern('login:').test('vmdn-corpus login: '));
    assert.throws(() => untilPattern('('), (e: VmdnError) => e.code === 'E_USAGE');
  });
});
