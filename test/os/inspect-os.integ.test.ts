/**
 * dpkg and OS inspection against the real tools: our status parser vs
 * dpkg-query on the host and on the corpus trees, inspectOs on the corpus
 * images' ext4 roots (through the ext reader), and symlink resolution that
 * must stay inside an image made with mkfs.ext4 -d.
 */
import { it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { openDisk } from '../../src/container/open.js';
import { readPartitionTable, partitionDisk } from '../../src/disk/partitions.js';
import { probeFilesystem } from '../../src/fs/probe.js';
import { parseStanzas, installedPackages } from '../../src/os/dpkg.js';
import { inspectOs } from '../../src/os/inspect-os.js';
import { readPath } from '../../src/os/fs-read.js';
import { VmdnError } from '../../src/errors.js';
import { corpusDir, CORPUS_IMAGES } from '../helpers/corpus.js';
import { tmpDir } from '../helpers/tmp.js';

const t = tmpDir('vmdn-os-');
after(() => t.cleanup());

/** Installed packages as dpkg-query sees them: "name\tversion\tarch", sorted. */
function dpkgQuery(admindir: string): string[] {
  const out = execFileSync('dpkg-query', [`--admindir=${admindir}`, '-W', '-f', '${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\n'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return out.split('\n').filter((l) => l.startsWith('installed\t')).map((l) => l.slice('installed\t'.length)).sort();
}

const ours = (text: string): string[] => installedPackages(parseStanzas(text)).map((p) => `${p.name}\t${p.version}\t${p.arch}`).sort();

/** `dpkg-query -S`: the owners of one path, or [] when no package owns it. */
function dpkgOwners(admindir: string, p: string): string[] {
  const r = spawnSync('dpkg-query', [`--admindir=${admindir}`, '-S', p], { encoding: 'utf8' });
  if (r.status !== 0) return [];
  const line = r.stdout.split('\n').find((l) => l.endsWith(`: ${p}`) && !l.startsWith('diversion'))!;
  return line.slice(0, -(p.length + 2)).split(', ').sort();
}

it('host dpkg status: parser equals dpkg-query', (ctx) => {
  if (!fs.existsSync('/var/lib/dpkg/status')) { ctx.skip('host has no dpkg database'); return; }
  assert.deepEqual(ours(fs.readFileSync('/var/lib/dpkg/status', 'utf8')), dpkgQuery('/var/lib/dpkg'));
});

it('corpus: inspectOs on each image root equals dpkg-query and os-release of its tree', async (ctx) => {
  const c = corpusDir();
  if (!c.dir) { console.log(`skipped: ${c.reason}`); ctx.skip(c.reason); return; }
  for (const name of CORPUS_IMAGES) {
    const tree = path.join(c.dir, `${name}.tree`);
    const admin = path.join(tree, 'var/lib/dpkg');
    if (!fs.existsSync(admin)) continue;
    const want = dpkgQuery(admin);
    assert.deepEqual(ours(fs.readFileSync(path.join(admin, 'status'), 'utf8')), want, `${name}: tree status`);
    const d = await openDisk(path.join(c.dir, `${name}.qcow2`));
    try {
      const root = (await readPartitionTable(d)).partitions.find((p) => p.index === 1)!;
      const r = await probeFilesystem(partitionDisk(d, root));
      assert.equal(r.kind, 'ext4');
      if (!r.fs) { console.log(`${name}: ext reader unavailable (${r.note}); image part skipped`); continue; }
      const os = await inspectOs(r.fs);
      assert.equal(os.packageManager, 'dpkg');
      assert.deepEqual(os.packages.map((p) => `${p.name}\t${p.version}\t${p.arch}`).sort(), want, `${name}: image packages`);
      assert.equal(os.hostname, 'vmdn-corpus');
      // The shell is the reference for os-release quoting.
      const sh = execFileSync('sh', ['-c', '. "$1"; printf "%s\\n%s\\n%s" "$ID" "$VERSION_ID" "$PRETTY_NAME"', 'sh', path.join(tree, 'usr/lib/os-release')], { encoding: 'utf8' });
      assert.deepEqual([os.osRelease?.ID, os.osRelease?.VERSION_ID, os.osRelease?.PRETTY_NAME].join('\n'), sh);
      for (const p of ['/bin/ls', '/usr/lib/os-release', '/etc/ssh/ssh_config', '/usr/share/doc', '/etc/hostname', '/usr/bin/apt']) {
        assert.deepEqual((await os.fileOwners(p)).sort(), dpkgOwners(admin, p), `${name}: owners of ${p}`);
      }
      assert.deepEqual(await os.fileOwners('/bin/ls'), ['coreutils']);
      assert.ok((await os.fileOwners('/usr/share/doc')).length > 50);
      assert.deepEqual(os.warnings, []);
    } finally {
      await d.close();
    }
  }
});

it('symlinks resolve inside the image, never on the host', async (ctx) => {
  const src = path.join(t.dir, 'tree');
  fs.mkdirSync(path.join(src, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(src, 'usr/lib'), { recursive: true });
  fs.writeFileSync(path.join(src, 'usr/lib/os-release'), 'ID=inside\n');
  fs.symlinkSync('../../../../../usr/lib/os-release', path.join(src, 'etc/os-release'));
  fs.symlinkSync('/etc/shadow', path.join(src, 'etc/hostname')); // absolute: the image's /etc/shadow, which is absent
  fs.symlinkSync('loop2', path.join(src, 'etc/loop1'));
  fs.symlinkSync('loop1', path.join(src, 'etc/loop2'));
  const img = path.join(t.dir, 'ext.img');
  execFileSync('mkfs.ext4', ['-q', '-d', src, img, '8M'], { stdio: 'ignore' });
  const d = await openDisk(img);
  try {
    const r = await probeFilesystem(d);
    if (!r.fs) { ctx.skip(`ext reader unavailable: ${r.note}`); return; }
    const os = await inspectOs(r.fs);
    assert.deepEqual(os.osRelease, { ID: 'inside' });
    assert.equal(os.hostname, null);
    assert.equal(os.packageManager, null);
    await assert.rejects(readPath(r.fs, '/etc/loop1', 100), (e: unknown) => e instanceof VmdnError && e.code === 'E_FORMAT');
  } finally {
    await d.close();
  }
});
