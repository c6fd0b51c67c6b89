/**
 * Object rows written behind: add() queues the row and one commit every
 * ROW_DELAY_MS (or per ROW_BATCH rows) inserts the queue. A commit per row was
 * a third of a pull's main-thread time; lagging rows only widen the window a
 * killed import already leaves (bytes without rows, which gc removes). The
 * index flushes the queue before every other query, so readers in this
 * process never see it.
 */
import type { Digest } from '../digest.js';
import { asVmdnError, VmdnError } from '../../errors.js';
import type { IndexedObject } from './index-statements.js';

/** Queued object rows that force a flush without waiting for the timer. */
const ROW_BATCH = 1024;
/** Longest a queued row waits; short enough that another process sees it promptly. */
const ROW_DELAY_MS = 50;

export class ObjectRowQueue {
  private readonly pending = new Map<Digest, IndexedObject>();
  private flushTimer: NodeJS.Timeout | undefined;
  /** A failed background flush, rethrown by the next call (a timer has no caller to tell). */
  private flushError: unknown;

  /** `commit` writes the rows in one transaction, or throws and writes none. */
  constructor(private readonly commit: (rows: IndexedObject[]) => void) {}

  /** A copy of the queued row of `digest`, if it is queued. */
  get(digest: Digest): IndexedObject | undefined {
    const queued = this.pending.get(digest);
    return queued ? { ...queued } : undefined;
  }

  add(o: IndexedObject): void {
    this.pending.set(o.digest, { digest: o.digest, size: o.size, storedSize: o.storedSize, pack: o.pack, offset: o.offset });
    if (this.pending.size >= ROW_BATCH) this.flush();
    else this.flushTimer ??= setTimeout(() => {
      try {
        this.flush();
      } catch (err) {
        this.flushError = err;
      }
    }, ROW_DELAY_MS);
  }

  /** Commit the queued rows in one transaction. */
  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.flushError !== undefined) {
      const err = this.flushError;
      this.flushError = undefined;
      // a full disk stays an I/O error (exit 6), not a damaged store
      const code = asVmdnError(err).code === 'E_IO' ? 'E_IO' : 'E_STORE';
      throw new VmdnError(code, `store index write failed: ${(err as Error).message}`, {}, { cause: err });
    }
    if (this.pending.size === 0) return;
    const rows = [...this.pending.values()];
    this.commit(rows);
    // only after the commit: a failed one keeps the rows visible and queued for the next try
    for (const o of rows) if (this.pending.get(o.digest) === o) this.pending.delete(o.digest);
  }
}
