/**
 * The qemu side of `vmdn boot`, as plain data: the kernel command line and
 * qemu-system-x86_64's arguments (pure, unit-tested), which accelerator the
 * machine offers, and where the binary is.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { VmdnError } from '../errors.js';

export const QEMU = 'qemu-system-x86_64';
export const QEMU_PACKAGE = 'qemu-system-x86';

export interface QemuPlan {
  kernel: string;
  initrd?: string;
  append: string;
  memoryMiB: number;
  cpus: number;
  /** The NBD server's Unix socket. */
  socket: string;
  readOnly: boolean;
  accel: 'kvm' | 'tcg';
  /** Given by the user after `--`, last so they can override. */
  extra: string[];
}

/** root=/dev/vdaN for the root filesystem's partition (the disk is the first virtio disk), rw unless read-only, the console on ttyS0. */
export function kernelCommandLine(rootPartition: number, readOnly: boolean, extra?: string): string {
  const root = rootPartition === 0 ? '/dev/vda' : `/dev/vda${rootPartition}`;
  return [`root=${root}`, readOnly ? 'ro' : 'rw', 'console=ttyS0', extra?.trim()].filter(Boolean).join(' ');
}

/** qemu splits option values at commas; a literal comma is written twice. */
const qemuValue = (s: string) => s.replace(/,/g, ',,');

/** Whether the user's arguments set up a network themselves. */
const hasNetwork = (extra: string[]) => extra.some((a) => /^--?(nic|net|netdev)$/.test(a) || /^(virtio-net|e1000|rtl8139|ne2k|pcnet|vmxnet)/.test(a));

export function qemuArgs(p: QemuPlan): string[] {
  const drive = `file=${qemuValue(`nbd+unix:///?socket=${p.socket}`)},format=raw,if=virtio${p.readOnly ? ',readonly=on' : ''}`;
  return [
    '-machine', `accel=${p.accel}`,
    ...(p.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-m', String(p.memoryMiB),
    '-smp', String(p.cpus),
    '-kernel', p.kernel,
    ...(p.initrd ? ['-initrd', p.initrd] : []),
    '-append', p.append,
    '-drive', drive,
    // the serial console on stdio (Ctrl-A X quits), no window
    '-nographic',
    // no network unless asked (-- -nic user): a guest reaching out is the user's choice
    ...(hasNetwork(p.extra) ? [] : ['-nic', 'none']),
    ...p.extra,
  ];
}

/** The QMP conversation of the KVM probe: its answer to query-status shows the vCPUs were set up. */
const KVM_PROBE_QMP = '{"execute":"qmp_capabilities"}\n{"execute":"query-status"}\n{"execute":"quit"}\n';

/**
 * KVM when /dev/kvm opens read-write and `qemu` can really set up a KVM vCPU
 * with `-cpu host` (a paused machine, asked its status over QMP, ~50 ms);
 * else TCG (emulation: slower, works anywhere), with the reason. The probe is
 * needed because some nested hosts hand out a /dev/kvm on which qemu aborts
 * at the first vCPU reset ("failed to set MSR 0x10a").
 */
export function pickAccel(dev = '/dev/kvm', qemu = QEMU): { accel: 'kvm' | 'tcg'; why?: string } {
  try {
    fs.closeSync(fs.openSync(dev, 'r+'));
  } catch (err) {
    return { accel: 'tcg', why: `${dev}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  const args = ['-accel', 'kvm', '-cpu', 'host', '-S', '-display', 'none', '-nodefaults', '-m', '16', '-qmp', 'stdio'];
  const r = spawnSync(qemu, args, { input: KVM_PROBE_QMP, encoding: 'utf8', timeout: 10_000 });
  if (r.status === 0 && /"status":/.test(r.stdout ?? '')) return { accel: 'kvm' };
  const said = (r.stderr ?? '').split('\n').find((l) => l.trim()) ?? r.error?.message ?? `exit ${r.status ?? r.signal}`;
  return { accel: 'tcg', why: `KVM unusable (${said.trim().slice(0, 200)})` };
}

/** The qemu binary on PATH, or E_NOT_FOUND saying what to install. */
export function findQemu(envPath = process.env.PATH ?? ''): string {
  for (const dir of envPath.split(path.delimiter).filter(Boolean)) {
    const p = path.join(dir, QEMU);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  throw new VmdnError('E_NOT_FOUND', `${QEMU} not found on PATH: install it (Debian/Ubuntu: apt-get install ${QEMU_PACKAGE}; Fedora: dnf install qemu-system-x86-core)`, { program: QEMU, package: QEMU_PACKAGE });
}
