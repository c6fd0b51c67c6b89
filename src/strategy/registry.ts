/**
 * The strategies vmdn knows, registered once. Import picks one by name;
 * export picks the one that rebuilds a stored manifest -- here and nowhere
 * else, so `vmdn export`, `vmdn pull` and later readers agree.
 */
import type { Manifest } from '../model/manifest.js';
import { VmdnError } from '../errors.js';
import type { Strategy, StrategyName } from './strategy.js';
import { chunksStrategy } from './chunks/strategy.js';
import { filesStrategy } from './files/strategy.js';
import { packagesStrategy } from './packages/strategy.js';

/** Most specific first: the first that rebuilds a manifest exports it. */
const STRATEGIES: readonly Strategy[] = [packagesStrategy, filesStrategy, chunksStrategy];

export const STRATEGY_NAMES = STRATEGIES.map((s) => s.name);

export function strategyNamed(name: string): Strategy {
  const s = STRATEGIES.find((x) => x.name === name);
  if (!s) throw new VmdnError('E_USAGE', `unknown strategy "${name}" (one of: ${STRATEGY_NAMES.join(', ')})`, { strategy: name });
  return s;
}

export function strategyFor(m: Manifest): Strategy {
  return STRATEGIES.find((s) => s.rebuilds(m))!;
}

/** Whether objects can be written straight to their final offsets while they download (every byte of the disk is a chunk). */
export function placesChunksDirectly(m: Manifest): boolean {
  return strategyFor(m) === chunksStrategy;
}

export type { Strategy, StrategyName };
