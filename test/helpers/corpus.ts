/** Locate the shared corpus (built and cached by scripts/corpus.sh). */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { REPO } from './cli.js';

export const CORPUS_IMAGES = ['base', 'academic', 'academic2', 'database', 'turn'] as const;
export type CorpusImage = (typeof CORPUS_IMAGES)[number];

/**
 * The corpus images the heaviest tests (files and packages rebuilds, the chunk
 * round trip) take today: every image but one of the two large academic
 * revisions, which share most of their content and alternate by UTC day, so
 * each is covered every other day of CI and the suite stays under its 30
 * minutes. The test names say which ran; VMDN_CORPUS_ALL=1 runs all five,
 * VMDN_CORPUS_IMAGES=a,b a chosen list (to reproduce a failure).
 */
export function corpusImagesToday(now = new Date()): readonly CorpusImage[] {
  const pinned = process.env.VMDN_CORPUS_IMAGES?.split(',').filter((n): n is CorpusImage => (CORPUS_IMAGES as readonly string[]).includes(n));
  if (pinned?.length) return pinned;
  if (process.env.VMDN_CORPUS_ALL === '1') return CORPUS_IMAGES;
  const skip = Math.floor(now.getTime() / 86_400_000) % 2 === 0 ? 'academic2' : 'academic';
  return CORPUS_IMAGES.filter((n) => n !== skip);
}

/** The corpus dir, or a reason it is not available. In CI its absence is a failure, not a skip. */
export function corpusDir(): { dir?: string; reason?: string } {
  const r = spawnSync('bash', [path.join(REPO, 'scripts', 'corpus.sh'), '--check'], { encoding: 'utf8' });
  if (r.status === 0) return { dir: r.stdout.trim() };
  const reason = 'shared corpus not built: run scripts/corpus.sh as root (about 6 minutes) to enable the corpus tests';
  if (process.env.CI) throw new Error(`${reason} (CI must build it: .ci/run does)`);
  return { reason };
}
