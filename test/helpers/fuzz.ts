/**
 * The loop shared by the seeded container-reader fuzz tests: each case makes a
 * mutated image, reads it like a consumer would, and must end in success or a
 * VmdnError within a time bound; anything else is a crash, reported with the
 * case's description so it can be replayed from the seed.
 */
import { openDisk } from '../../src/container/open.js';
import { VmdnError } from '../../src/errors.js';

const MiB = 2 ** 20;

/**
 * Cases for a seeded fuzz target: VMDN_FUZZ_CASES (set by `npm run fuzz` to
 * 10,000 or more), else `ci`, the smaller count every test run does.
 */
export function fuzzCases(ci: number): number {
  const n = Number(process.env.VMDN_FUZZ_CASES);
  return Number.isSafeInteger(n) && n > 0 ? n : ci;
}

export interface FuzzCase {
  /** Shown with a crash: which base image and mutations. */
  what: string;
  /** Read the mutated image; resolves to an outcome name (a VmdnError's code counts as one). */
  run: () => Promise<string>;
  /** Undo what the case changed on disk, after it ran (whatever the outcome). */
  after?: () => Promise<void>;
}

export interface FuzzResult {
  /** Outcome name (`run`'s result, a VmdnError code, or CRASH) -> count. */
  outcomes: Map<string, number>;
  /** Crashes and hangs (at most 10: the loop stops there). */
  failures: string[];
  ms: number;
  slowest: { ms: number; i: number };
}

export async function fuzzLoop(cases: number, timeoutMs: number, makeCase: (i: number) => Promise<FuzzCase>): Promise<FuzzResult> {
  const outcomes = new Map<string, number>();
  const failures: string[] = [];
  const started = performance.now();
  let slowest = { ms: 0, i: -1 };
  for (let i = 0; i < cases; i++) {
    const c = await makeCase(i);
    let outcome: string;
    const t0 = performance.now();
    try {
      outcome = await withTimeout(c.run(), timeoutMs);
    } catch (err) {
      if (process.env.VMDN_FUZZ_VERBOSE) console.log(i, c.what, (err as Error).message);
      if (err instanceof VmdnError) outcome = err.code;
      else {
        outcome = 'CRASH';
        failures.push(`case ${i} (${c.what}): ${(err as Error)?.stack ?? String(err)}`);
      }
    }
    if (performance.now() - t0 > slowest.ms) slowest = { ms: performance.now() - t0, i };
    await c.after?.();
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    if (failures.length >= 10) break;
  }
  return { outcomes, failures, ms: performance.now() - started, slowest };
}

/** Everything a consumer does with a disk: open, all extents, the first MiB, three random ranges drawn from `r`. */
export async function exerciseDisk(file: string, r: () => number): Promise<{ format: string; extents: number }> {
  const disk = await openDisk(file);
  try {
    let n = 0;
    for await (const _ of disk.extents()) n++;
    await disk.read(0, Math.min(MiB, disk.virtualSize));
    for (let i = 0; i < 3; i++) {
      const off = Math.floor(r() * disk.virtualSize);
      await disk.read(off, Math.min(Math.floor(r() * 300_000), disk.virtualSize - off));
    }
    return { format: disk.format, extents: n };
  } finally {
    await disk.close();
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`case took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
