/** Temporary overlays of killed nbd servers are removed by the next server; live servers' and other files stay. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { removeStaleOverlays } from '../../src/nbd/open.js';
import { tmpDir } from '../helpers/tmp.js';

describe('nbd temporary overlays', () => {
  it('removeStaleOverlays removes the directories of dead servers only', () => {
    const t = tmpDir('vmdn-ovl-');
    const live = spawn('sleep', ['30']);
    try {
      const dead = spawnSync('true').pid!;
      const make = (name: string, dir = true) => {
        const p = path.join(t.dir, name);
        if (dir) {
          fs.mkdirSync(p);
          fs.writeFileSync(path.join(p, 'overlay'), 'guest writes');
        } else fs.writeFileSync(p, 'x');
        return p;
      };
      const stale = make(`vmdn-nbd-${dead}-abc123`);
      const running = make(`vmdn-nbd-${live.pid}-def456`);
      const mine = make(`vmdn-nbd-${process.pid}-ghi789`);
      const notOurs = make(`other-${dead}-x`);
      const aFile = make(`vmdn-nbd-${dead}-file`, false);
      assert.deepEqual(removeStaleOverlays(t.dir), [stale]);
      assert.equal(fs.existsSync(stale), false);
      for (const p of [running, mine, notOurs, aFile]) assert.ok(fs.existsSync(p), `${path.basename(p)} was removed`);
    } finally {
      live.kill();
      t.cleanup();
    }
  });
});
