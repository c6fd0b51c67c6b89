/**
 * Packages strategy on every shared-corpus image, with packages from the
 * Debian archive the host's apt is configured with (downloaded .debs kept in
 * a cache outside the clone, keyed by SHA-256). Checked as the files
 * strategy is: `vmdn diff --layer files` empty, times to the nanosecond,
 * `e2fsck -fn` clean, `sfdisk --dump` identical; and the turn image's edited
 * conffile is carried as the image's own file, not taken from coturn.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdnOk } from '../helpers/cli.js';
import { corpusDir, corpusImagesToday } from '../helpers/corpus.js';
import { tmpDir } from '../helpers/tmp.js';
import { exportAndCheck } from '../helpers/rebuild-checks.js';
import { hostAptSources } from '../../src/os/apt-mirror.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { resolveImage } from '../../src/images/names.js';
import { loadTree, imageObjects } from '../../src/model/objects.js';

const corpus = corpusDir();
const noArchive = hostAptSources().length ? undefined : 'the host has no apt sources: no Debian archive to take packages from';
const skip = corpus.reason ?? noArchive;
if (skip) console.log(`# SKIP packages strategy on the corpus: ${skip}`);
const DEB_CACHE = process.env.VMDN_DEB_CACHE ?? '/var/cache/vmdn-debs';

describe('packages strategy on the shared corpus', { skip }, () => {
  let t: ReturnType<typeof tmpDir>;
  let store: string;
  const reports = new Map<string, { files: Record<string, number> }>();
  before(() => {
    t = tmpDir('vmdn-packages-corpus-');
    store = path.join(t.dir, 'store');
    fs.mkdirSync(DEB_CACHE, { recursive: true });
  });
  after(() => t.cleanup());

  for (const name of corpusImagesToday()) {
    it(`${name}: package files from the .debs, rebuilt file-identical, e2fsck clean`, async () => {
      const src = path.join(corpus.dir!, `${name}.raw`);
      const r = vmdnOk(store, ['import', src, '--name', name, '--strategy', 'packages', '--deb-cache', DEB_CACHE]);
      const p = r.packages.find((x: { index: number }) => x.index === 1);
      assert.ok(p, JSON.stringify(r.notes));
      // the corpus was installed from this archive: every package is there, and most bytes are theirs
      assert.deepEqual(p.missing, []);
      assert.ok(p.used > 100 && p.used <= p.installed, `${p.used} of ${p.installed} packages used`);
      assert.ok(p.bytes.package > p.bytes.own * 0.5, JSON.stringify(p.bytes));
      reports.set(name, p);
      await exportAndCheck(store, name, src, t.dir);
    });
  }

  it('turn: the edited /etc/turnserver.conf is the image\'s own file; coturn\'s binary comes from its package', async () => {
    const s = await LocalStore.open(store);
    try {
      const { manifest } = await resolveImage(s, { name: 'turn', tag: 'latest' });
      const f = manifest.filesystems!.find((x) => x.index === 1)!;
      const records = await loadTree(f, s);
      const at = (p: string) => records.find((r) => Buffer.from(r.path).toString() === p)!;
      assert.ok(reports.get('turn')!.files.modified >= 1, 'the edited conffile counts as a modified package file');
      const conf = at('etc/turnserver.conf');
      assert.equal(conf.pkg, undefined, 'edited conffile must not come from the package');
      assert.ok(conf.chunks || conf.streamOffset !== undefined);
      const bin = at('usr/bin/turnserver');
      assert.notEqual(bin.pkg, undefined);
      assert.equal(f.packages![bin.pkg!]!.name, 'coturn');
    } finally {
      await s.close();
    }
  });

  it('base: the EFI partition\'s kernel copy is the linux-image package\'s objects (chunked alike), not VM-specific bytes', async () => {
    const s = await LocalStore.open(store);
    try {
      const { manifest } = await resolveImage(s, { name: 'base', tag: 'latest' });
      const pkgChunks = new Set(manifest.filesystems!.flatMap((f) => f.packages ?? []).filter((p) => p.name.startsWith('linux-image-')).flatMap((p) => p.tar.map((c) => c[2])));
      const shared = manifest.chunks.filter((c) => pkgChunks.has(c[2])).reduce((n, c) => n + c[1], 0);
      assert.ok(shared > 10e6, `${shared} bytes of disk chunks are linux-image's (vmlinuz on the EFI partition is ~14 MB)`);
    } finally {
      await s.close();
    }
  });

  it('gc keeps every object each image needs (packages installed but used by no file may go); the store verifies clean', async () => {
    vmdnOk(store, ['gc']);
    assert.equal(vmdnOk(store, ['verify']).ok, true);
    const s = await LocalStore.open(store);
    try {
      for (const name of corpusImagesToday()) {
        const { manifest } = await resolveImage(s, { name, tag: 'latest' });
        const missing = [...(await imageObjects(manifest, s))].filter((d) => !s.index.getObject(d));
        assert.deepEqual(missing, [], `${name}: objects gc took`);
      }
    } finally {
      await s.close();
    }
  });
});
