import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { REPO } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';

it('npm start (the demo) builds, imports, exports bit-identically and reports dedup', () => {
  const t = tmpDir();
  try {
    const r = spawnSync(process.execPath, [path.join(REPO, 'dist', 'scripts', 'demo.js')], {
      encoding: 'utf8',
      env: { ...process.env, VMDN_STORE: path.join(t.dir, 'store') },
    });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /bit-identical to the original/);
    const m = /stored as .* \(([\d.]+)x smaller\)/.exec(r.stdout);
    assert.ok(m && Number(m[1]) > 1.2, r.stdout);
  } finally {
    t.cleanup();
  }
});
