#!/usr/bin/env node
// Makes sure the Debian tools vmdn's tests, demo and benchmark use are installed.
// Idempotent: installs only what is missing, with apt-get, when run as root;
// otherwise prints the apt-get command to run and exits 1.
//   node scripts/ensure-debian-tools.mjs [demo|test|bench]   (default: test)
import { execFileSync, spawnSync } from 'node:child_process';

const NEEDS = {
  demo: { mke2fs: 'e2fsprogs' },
  test: {
    mke2fs: 'e2fsprogs', debugfs: 'e2fsprogs', 'qemu-img': 'qemu-utils', 'qemu-io': 'qemu-utils', 'qemu-nbd': 'qemu-utils',
    sfdisk: 'fdisk', nginx: 'nginx', curl: 'curl', mdir: 'mtools', 'mkfs.vfat': 'dosfstools', 'dpkg-query': 'dpkg', getfattr: 'attr', setfattr: 'attr',
    'mkfs.xfs': 'xfsprogs', mkswap: 'util-linux', e2fsck: 'e2fsprogs', 'dpkg-deb': 'dpkg', xz: 'xz-utils', zstd: 'zstd',
    'qemu-system-x86_64': 'qemu-system-x86', bzip2: 'bzip2', tar: 'tar', xmllint: 'libxml2-utils', chromium: 'chromium', gpg: 'gnupg', gpgv: 'gpgv',
    minisign: 'minisign',
    // the S3 store's tests run a real Ceph RGW (scripts/ceph-rgw.sh)
    'ceph-mon': 'ceph-mon', 'ceph-osd': 'ceph-osd', radosgw: 'radosgw', ceph: 'ceph-common', uuidgen: 'uuid-runtime',
  },
  bench: { mke2fs: 'e2fsprogs', debugfs: 'e2fsprogs', setfattr: 'attr', 'qemu-img': 'qemu-utils', 'qemu-nbd': 'qemu-utils', 'qemu-system-x86_64': 'qemu-system-x86', ip: 'iproute2', tc: 'iproute2', casync: 'casync', rsync: 'rsync', time: 'time', nginx: 'nginx', curl: 'curl', zstd: 'zstd', tar: 'tar', 'dpkg-deb': 'dpkg', xz: 'xz-utils', gpgv: 'gpgv' },
};
const profile = process.argv[2] ?? 'test';
const want = NEEDS[profile];
if (!want) {
  console.error(`usage: ensure-debian-tools.mjs [${Object.keys(NEEDS).join('|')}]`);
  process.exit(2);
}
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd} || test -x /usr/bin/${cmd} || test -x /usr/sbin/${cmd} || test -x /sbin/${cmd}`], { stdio: 'ignore' }).status === 0;
const missing = [...new Set(Object.entries(want).filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg))];
if (missing.length === 0) process.exit(0);
if (process.getuid?.() !== 0) {
  console.error(`vmdn needs these Debian packages for "${profile}": ${missing.join(' ')}\n  sudo apt-get install -y ${missing.join(' ')}`);
  process.exit(1);
}
console.error(`[vmdn] installing ${missing.join(' ')} ...`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
