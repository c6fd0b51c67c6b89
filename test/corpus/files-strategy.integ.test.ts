/**
 * Files strategy on every shared-corpus image: import records the ext4 root
 * as parameters + file tree, export rebuilds it with mke2fs. Checked with the
 * reference tools: `vmdn diff --layer files` empty, all four timestamps equal
 * to the nanosecond, `e2fsck -fn` clean on the rebuilt filesystem, and
 * `sfdisk --dump` identical (identifiers included).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdnOk } from '../helpers/cli.js';
import { corpusDir, corpusImagesToday } from '../helpers/corpus.js';
import { tmpDir } from '../helpers/tmp.js';
import { exportAndCheck, gcKeepsAllAndVerifies } from '../helpers/rebuild-checks.js';

const corpus = corpusDir();
if (corpus.reason) console.log(`# SKIP files strategy on the corpus: ${corpus.reason}`);

describe('files strategy on the shared corpus', { skip: corpus.reason }, () => {
  let t: ReturnType<typeof tmpDir>;
  let store: string;
  before(() => {
    t = tmpDir('vmdn-files-corpus-');
    store = path.join(t.dir, 'store');
  });
  after(() => t.cleanup());

  for (const name of corpusImagesToday()) {
    it(`${name}: rebuilt file-identical, times to the ns, e2fsck clean, same partition table`, async () => {
      const src = path.join(corpus.dir!, `${name}.raw`);
      const r = vmdnOk(store, ['import', src, '--name', name, '--strategy', 'files']);
      assert.ok(r.notes.some((n: string) => /ext4, \d+ entries recorded as files/.test(n)), r.notes.join('; '));
      assert.ok(r.notes.some((n: string) => /vfat: no rebuild for it, kept as chunks/.test(n)), 'the EFI partition falls back to chunks and import says so');
      await exportAndCheck(store, name, src, t.dir);
    });
  }

  it('gc keeps every object the file trees reference; the store verifies clean', () => {
    gcKeepsAllAndVerifies(store);
  });
});
