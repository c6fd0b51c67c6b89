/** diff's package ordering against the real `dpkg --compare-versions`, on tricky pairs (~, epochs, revisions, letters vs digits). */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { compareDebVersions } from '../../src/inspect/diff-packages.js';

const VERSIONS = ['1.0', '1.0~rc1', '1.0~~', '1.0+b1', '1.0-1', '1.0-1~deb12u1', '1.0-1+deb12u1', '1:0.9', '0:1.0', '2:1', '1.0a', '1.0.1',
  '1.00', '1.0-0', '10', '9', '1.2.3-4ubuntu1', '1.2.3-4', '3.40.1-2+deb12u2', '3.40.1-2', '15.18-0+deb12u1', '0.17+2.4-2+deb12u3', 'a', '1.0-a'];

it('compareDebVersions orders like dpkg --compare-versions', (ctx) => {
  if (spawnSync('dpkg', ['--version']).status !== 0) { ctx.skip('no dpkg on this machine'); return; }
  const bad: string[] = [];
  for (const a of VERSIONS) for (const b of VERSIONS) {
    const lt = spawnSync('dpkg', ['--compare-versions', a, 'lt', b]).status === 0;
    const eq = spawnSync('dpkg', ['--compare-versions', a, 'eq', b]).status === 0;
    const want = lt ? -1 : eq ? 0 : 1;
    if (Math.sign(compareDebVersions(a, b)) !== want) bad.push(`${a} vs ${b}: want ${want}`);
  }
  assert.deepEqual(bad, []);
});
