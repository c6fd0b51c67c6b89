/**
 * Writeback of a pull's output while it downloads: every `every` bytes
 * placed, an fdatasync of the file runs in libuv's pool (one at a time), so
 * the writer's final fsync before its rename finds little left to write. It
 * took a second or more of a loopback pull's wall time, after the download,
 * for an image of 500 MiB. Durability still rests on that final fsync: an
 * error here is left for it to report (Linux reports a writeback error to
 * every descriptor open when it happened).
 */
import fs from 'node:fs/promises';

/**
 * Bytes placed between two writebacks: about a second's worth at 100 Mbit/s, a
 * few hundredths on loopback. At 64 MiB a loopback pull of base still waited
 * 60-125 ms at its end (the writeback running, then the final fsync); what is
 * left unsynced at the end is about half of this.
 */
export const WRITE_BEHIND_BYTES = 16 << 20;

export class WriteBehind {
  private fh: Promise<fs.FileHandle | undefined>;
  private since = 0;
  private running: Promise<void> | undefined;

  constructor(path: string, private readonly every = WRITE_BEHIND_BYTES) {
    this.fh = fs.open(path, 'r+').catch(() => undefined);
  }

  /** `bytes` more were written into the file. */
  placed(bytes: number): void {
    this.since += bytes;
    if (this.since < this.every || this.running) return;
    this.since = 0;
    this.running = this.fh
      .then((fh) => fh?.datasync())
      .catch(() => {})
      .finally(() => {
        this.running = undefined;
      });
  }

  /** Wait for the writeback running, and let go of the file. */
  async close(): Promise<void> {
    await this.running;
    await (await this.fh)?.close().catch(() => {});
  }
}
