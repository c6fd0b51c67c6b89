/**
 * The checks every file-layer rebuild of a corpus image must pass: export,
 * then `vmdn diff --layer files` empty, all four timestamps equal to the
 * nanosecond, `sfdisk --dump` identical, `e2fsck -fn` clean on partition 1;
 * and, for the store, gc removing nothing and verify clean.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdnOk } from './cli.js';
import { e2fsckPartition, sfdiskDump } from './disk-checks.js';
import { timeDifferences } from './fs-times.js';

export async function exportAndCheck(store: string, name: string, src: string, scratch: string): Promise<void> {
  const out = path.join(scratch, `${name}.raw`);
  vmdnOk(store, ['export', name, out]);
  try {
    const d = vmdnOk(store, ['diff', src, out, '--layer', 'files']);
    assert.equal(d.identical, true, JSON.stringify(d.volumes).slice(0, 2000));
    const times = await timeDifferences(src, out);
    assert.equal(times.sizes[1], times.sizes[0]);
    assert.deepEqual(times.wrong, []);
    assert.equal(sfdiskDump(out), sfdiskDump(src));
    const root = vmdnOk(store, ['inspect', src]).partitions.find((p: { index: number }) => p.index === 1);
    const fsck = e2fsckPartition(out, root.offset, root.length, scratch);
    assert.ok(fsck.clean, fsck.out);
  } finally {
    fs.rmSync(out, { force: true });
  }
}

export function gcKeepsAllAndVerifies(store: string): void {
  const objects = vmdnOk(store, ['stats']).objects;
  const gc = vmdnOk(store, ['gc']);
  assert.equal(gc.removedObjects ?? gc.removed ?? 0, 0, JSON.stringify(gc));
  assert.equal(vmdnOk(store, ['stats']).objects, objects);
  assert.equal(vmdnOk(store, ['verify']).ok, true);
}
