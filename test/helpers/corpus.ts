/** Locate the shared corpus (built and cached by scripts/corpus.sh). */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { REPO } from './cli.js';

export const CORPUS_IMAGES = ['base', 'academic', 'academic2', 'database', 'turn'] as const;

/** The corpus dir, or a reason it is not available. In CI its absence is a failure, not a skip. */
export function corpusDir(): { dir?: string; reason?: string } {
  const r = spawnSync('bash', [path.join(REPO, 'scripts', 'corpus.sh'), '--check'], { encoding: 'utf8' });
  if (r.status === 0) return { dir: r.stdout.trim() };
  const reason = 'shared corpus not built: run scripts/corpus.sh as root (about 6 minutes) to enable the corpus tests';
  if (process.env.CI) throw new Error(`${reason} (CI must build it: .ci/run does)`);
  return { reason };
}
