/**
 * Object rows written behind: add() queues the row and one commit every
 * ROW_DELAY_MS (or per ROW_BATCH rows) inserts the queue. A commit per row was
 * a third of a pull's main-thread time; lagging rows only widen the window a
 * killed import already leaves (bytes without rows, which gc removes). The
 * index flushes the queue before every other query, so readers in this
 * process never see it.
 *
 * The queue's own flushes (timer, batch) make the bytes durable off the event
 * loop when the index has a way to (`behind`: PackWriter.syncBehind) and then
 * commit only the rows queued before the sync started; one runs at a time,
 * and rows queued meanwhile wait for the next. A blocking fdatasync here was
 * a third of a loopback pull's main-thread time, its codec workers idle.
 */
import type { Digest } from '../digest.js';
import { asVmdnError, VmdnError } from '../../errors.js';
import type { IndexedObject } from './index-statements.js';

/** Queued object rows that force a flush without waiting for the timer. */
const ROW_BATCH = 1024;
/**
 * Longest a queued row waits; short enough that another process sees it
 * promptly. Each flush costs a pack fdatasync and a commit that rewrites the
 * index pages it touches (and, every few, a WAL checkpoint with two fsyncs):
 * at 50 ms they were a sixth of a loopback pull's main-thread time.
 */
const ROW_DELAY_MS = 200;

/** A flush off the event loop: `durable` settles once the queued rows' bytes are on disk, then `insert` commits rows without syncing again. */
export interface BehindFlush {
  durable: Promise<void>;
  insert: (rows: IndexedObject[]) => void;
}

export class ObjectRowQueue {
  private readonly pending = new Map<Digest, IndexedObject>();
  private flushTimer: NodeJS.Timeout | undefined;
  /** A failed background flush, rethrown by the next call (a timer has no caller to tell). */
  private flushError: unknown;

  /** The flush running behind (its rows are still queued, and visible, until it commits them). */
  private running: Promise<void> | undefined;

  /**
   * `commit` makes the rows' bytes durable and writes the rows in one
   * transaction, or throws and writes none; `behind`, if it gives one, starts
   * the same off the event loop.
   */
  constructor(private readonly commit: (rows: IndexedObject[]) => void, private readonly behind: () => BehindFlush | undefined = () => undefined) {}

  /** A copy of the queued row of `digest`, if it is queued. */
  get(digest: Digest): IndexedObject | undefined {
    const queued = this.pending.get(digest);
    return queued ? { ...queued } : undefined;
  }

  add(o: IndexedObject): void {
    this.pending.set(o.digest, { digest: o.digest, size: o.size, storedSize: o.storedSize, pack: o.pack, offset: o.offset });
    this.schedule();
  }

  private schedule(): void {
    if (this.running || this.pending.size === 0) return; // the running flush schedules the next when it ends
    if (this.pending.size >= ROW_BATCH) return this.flushBehind();
    this.flushTimer ??= setTimeout(() => this.flushBehind(), ROW_DELAY_MS);
  }

  /** Commit the rows queued now, behind if the index can; a failure is rethrown by the next flush(). */
  private flushBehind(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    // the rows before the sync starts: it covers every byte they point at
    const rows = [...this.pending.values()];
    const b = this.behind();
    if (!b) {
      try {
        this.flush();
      } catch (err) {
        this.flushError = err;
      }
      return;
    }
    this.running = b.durable.then(() => {
      // a flush() meanwhile may have committed them (or a newer row replaced one): only what is still queued as it was
      const still = rows.filter((o) => this.pending.get(o.digest) === o);
      if (!still.length) return;
      b.insert(still);
      for (const o of still) if (this.pending.get(o.digest) === o) this.pending.delete(o.digest);
    }).catch((err: unknown) => {
      this.flushError ??= err;
    }).finally(() => {
      this.running = undefined;
      if (this.flushError === undefined) this.schedule();
    });
  }

  /** Resolves once no flush runs behind (a close waits for it: its fdatasyncs use the packs' descriptors). */
  async settled(): Promise<void> {
    while (this.running) await this.running;
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
