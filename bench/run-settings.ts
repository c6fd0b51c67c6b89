/**
 * What `npm run bench` (run.ts) runs: the corpus's images and delivery
 * cases, and the settings read from the environment (listed in run.ts).
 */
import path from 'node:path';
import { DEFAULT_CHUNKER_SPEC } from '../src/strategy/defaults.js';
import { formatChunkerSpec, parseChunkerSpec } from '../src/strategy/chunker.js';

export const ALL_IMAGES = ['base', 'academic', 'academic2', 'database', 'turn'];
/** Delivery cases: `target` to a site that holds `held`; the project's casync figure beside it. */
export const CASES: { target: string; held: string[]; referenceCasyncMB: number }[] = [
  { target: 'academic', held: ['base'], referenceCasyncMB: 457 },
  { target: 'academic2', held: ['academic'], referenceCasyncMB: 150 },
  { target: 'database', held: ['base', 'academic'], referenceCasyncMB: 215 },
  { target: 'turn', held: ['base', 'academic', 'database'], referenceCasyncMB: 25.8 },
];
const DEFAULT_CHUNKERS = ['cdc:16k:64k:256k', 'cdc:8k:32k:128k', 'cdc:4k:16k:64k', 'fixed:64k', 'fixed:4k'];

/** The delivery cases whose images are all in the run. */
export const casesWithin = (images: string[]) => CASES.filter((c) => [c.target, ...c.held].every((n) => images.includes(n)));

export interface RunSettings {
  images: string[];
  chunkerSpecs: string[];
  defaultSpec: string;
  budgetMinutes: number;
  workDir: string;
  resultsDir: string;
  wantDrop: boolean;
  parts: Set<string>;
}

const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const canonical = (spec: string) => formatChunkerSpec(parseChunkerSpec(spec));

/** The settings from the environment (BENCH_*); throws on an unknown image or part. */
export function runSettingsFromEnv(env: NodeJS.ProcessEnv, repoRoot: string): RunSettings {
  const images = env.BENCH_IMAGES ? list(env.BENCH_IMAGES) : ALL_IMAGES;
  for (const n of images) if (!ALL_IMAGES.includes(n)) throw new Error(`BENCH_IMAGES: unknown image ${n} (known: ${ALL_IMAGES.join(', ')})`);
  images.sort((a, b) => ALL_IMAGES.indexOf(a) - ALL_IMAGES.indexOf(b));
  const chunkerSpecs = (env.BENCH_CHUNKERS ? list(env.BENCH_CHUNKERS) : DEFAULT_CHUNKERS).map(canonical);
  const defaultSpec = canonical(DEFAULT_CHUNKER_SPEC);
  const budgetMinutes = Number(env.BENCH_BUDGET_MIN ?? 25);
  const workDir = path.resolve(env.BENCH_WORKDIR ?? '/var/tmp/vmdn-bench');
  const resultsDir = path.resolve(env.BENCH_RESULTS_DIR ?? path.join(repoRoot, 'bench', 'results'));
  const wantDrop = env.BENCH_DROP_CACHES !== '0';
  const parts = new Set(env.BENCH_PARTS ? list(env.BENCH_PARTS) : ['compare', 'chunkers']);
  for (const p of parts) if (p !== 'compare' && p !== 'chunkers') throw new Error(`BENCH_PARTS: unknown part ${p} (compare, chunkers)`);
  return { images, chunkerSpecs, defaultSpec, budgetMinutes, workDir, resultsDir, wantDrop, parts };
}
