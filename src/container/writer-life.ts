/**
 * The life of a disk writer over a temp file (or sink): open → finishing →
 * done | aborted, one write() at a time. Every writer follows the same rules
 * with the same errors, so they live here once; the writers do the format work.
 */
import { VmdnError, asVmdnError } from '../errors.js';

/** What is committed (atomically moved to its final name) or discarded at the end. */
export interface Committable {
  commit(): Promise<void>;
  discard(): Promise<void>;
}

export class WriterLife {
  private busy = false;
  private state: 'open' | 'finishing' | 'done' | 'aborted' = 'open';

  constructor(private readonly out: Committable) {}

  /** Throws unless a write() may start: the writer is open and no other write() is in progress. */
  checkWritable(): void {
    if (this.state !== 'open') throw new VmdnError('E_USAGE', `write after ${this.state}`);
    if (this.busy) throw new VmdnError('E_USAGE', 'concurrent write: await each write() before the next');
  }

  /** Run the body of a write(), marked in progress until it settles. */
  async writing(work: () => Promise<void>): Promise<void> {
    this.busy = true;
    try {
      await work();
    } finally {
      this.busy = false;
    }
  }

  /** finish(): run `work` (the last data and metadata), then commit; any failure discards the output. */
  async finish(work: () => Promise<void>): Promise<void> {
    if (this.state !== 'open') throw new VmdnError('E_USAGE', `finish after ${this.state}`);
    if (this.busy) throw new VmdnError('E_USAGE', 'finish() while a write() is still in progress');
    this.state = 'finishing';
    try {
      await work();
      await this.out.commit();
      this.state = 'done';
    } catch (err) {
      this.state = 'aborted';
      await this.out.discard().catch(() => undefined);
      throw asVmdnError(err);
    }
  }

  /** abort(): unless already done or aborted, let `settle` wait for writes in flight, then discard the output. */
  async abort(settle?: () => Promise<void>): Promise<void> {
    if (this.state === 'done' || this.state === 'aborted') return;
    this.state = 'aborted';
    await settle?.();
    await this.out.discard();
  }
}
