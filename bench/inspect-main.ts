/** Run the inspect benchmark alone: node dist/bench/inspect-main.js [IMAGE]  (default academic; prints Markdown, then JSON). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { benchInspect } from './inspect.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const c = spawnSync('bash', [path.join(repoRoot, 'scripts', 'corpus.sh'), '--check'], { encoding: 'utf8' });
if (c.status !== 0) {
  console.error('the shared corpus is not built: run scripts/corpus.sh as root first');
  process.exit(1);
}
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmdn-bench-inspect-'));
try {
  const r = await benchInspect({ corpusDir: c.stdout.trim(), repoRoot, tmpDir, image: process.argv[2] });
  console.log(r.markdown);
  console.log(JSON.stringify({ ...r, markdown: undefined }, null, 2));
} finally {
  fs.rmSync(tmpDir, { recursive: true, force: true });
}
