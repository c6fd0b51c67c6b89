/**
 * The layers hold: no import runs up the layers of docs/architecture.md and no
 * files import each other in a loop, as dependency-cruiser reads the sources
 * (rules in .dependency-cruiser.cjs). A new folder needs a place there first.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const depcruise = path.join(root, 'node_modules', '.bin', 'depcruise');

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
  cycle?: Array<{ name: string }>;
}

describe('layers', () => {
  it('no import runs up the layers, none crosses a wall inside one, no loops', () => {
    const r = spawnSync(depcruise, ['src', '--config', '.dependency-cruiser.cjs', '--output-type', 'json'], { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.ok(r.stdout, `depcruise printed nothing: ${r.stderr}`);
    const out = JSON.parse(r.stdout) as { summary: { violations: Violation[]; totalCruised: number } };
    assert.ok(out.summary.totalCruised > 100, `only ${out.summary.totalCruised} modules cruised: is the config reading src/?`);
    const lines = out.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}${v.cycle ? ` (loop: ${v.cycle.map((c) => c.name).join(' -> ')})` : ''}`);
    assert.deepEqual(lines, [], lines.join('\n'));
  });
});
