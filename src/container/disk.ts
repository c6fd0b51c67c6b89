/**
 * The one random-access disk interface every container format implements.
 * Offsets and sizes are byte counts as JS numbers (exact up to 2^53).
 */
export interface Extent {
  /** Offset in the virtual disk. */
  readonly offset: number;
  readonly length: number;
  /**
   * 'data': allocated, may hold non-zero bytes.
   * 'zero': allocated or marked as reading zeros (qcow2 zero clusters).
   * Regions not covered by any extent are holes and read as zeros.
   */
  readonly kind: 'data' | 'zero';
}

export interface Disk {
  /** Short format name: 'raw', 'qcow2', ... */
  readonly format: string;
  readonly virtualSize: number;
  /** Natural allocation granularity (qcow2 cluster size, 4096 for raw). */
  readonly clusterSize: number;
  /** Allocated extents in ascending, non-overlapping order, adjacent extents of a kind merged. */
  extents(signal?: AbortSignal): AsyncIterable<Extent>;
  /** Read exactly `length` bytes at `offset` (holes read as zeros); must stay within virtualSize. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

export interface DiskWriter {
  /**
   * Set by writers whose output is a plain file at final offsets (raw): other
   * threads may write data straight into this path, in any order, before
   * finish(). Lets export decode, verify and write in worker threads without
   * moving the bytes through the main thread.
   */
  readonly directTarget?: string;
  /**
   * Set with directTarget: start writing what the other threads have put into
   * the file so far to disk, in the background (finish() waits for it). Called
   * as the data arrives, it overlaps the disk's work with the decoding, instead
   * of leaving all of it to finish()'s fsync.
   */
  syncAhead?(): void;
  /**
   * Write data at a virtual offset. Callers write in ascending offset order, and may use `data`'s
   * memory again once the returned promise settles (export reads into reused buffers): a writer
   * that keeps bytes past that copies them.
   */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Finish the file (metadata, truncation) and atomically move it into place. */
  finish(): Promise<void>;
  /** Abandon: remove temporary output. */
  abort(): Promise<void>;
}
