/**
 * Writes to the store index under contention from other processes on the same
 * store. Every write transaction is IMMEDIATE: a deferred one that read first
 * cannot upgrade once another process has committed (SQLITE_BUSY at once, no
 * busy wait), which a busy store turned into failed imports. A write still
 * busy after the busy timeout is retried a few times before it fails.
 */
import type Database from 'better-sqlite3';
import { VmdnError } from '../../errors.js';

/** SQLite's own wait for a lock another process holds, per attempt. */
export const BUSY_TIMEOUT_MS = 15_000;
/** Attempts of a write transaction that stays busy beyond the busy timeout. */
const BUSY_ATTEMPTS = 4;

const SLEEP = new Int32Array(new SharedArrayBuffer(4));

/**
 * SQLite already waited BUSY_TIMEOUT_MS inside the call; wait some more between
 * attempts (synchronously: the caller is a synchronous transaction), then give
 * up with a message that says what is going on.
 */
export function retryBusy<T>(fn: () => T): T {
  for (let attempt = 1; ; attempt++) {
    try {
      return fn();
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== 'string' || !code.startsWith('SQLITE_BUSY')) throw err;
      if (attempt >= BUSY_ATTEMPTS) {
        throw new VmdnError('E_STORE', `store index stayed locked by another process for ${Math.round((attempt * BUSY_TIMEOUT_MS) / 1000)} s`, { sqlite: code }, { cause: err });
      }
      Atomics.wait(SLEEP, 0, 0, 100 * attempt);
    }
  }
}

/** Run `fn` in an IMMEDIATE transaction of `db`, retried while the database stays busy. */
export function writeImmediate<T>(db: Database.Database, fn: () => T): T {
  const tx = db.transaction(fn);
  return retryBusy(() => tx.immediate());
}
