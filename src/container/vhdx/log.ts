/**
 * The VHDX log, replayed in memory. A header with a non-zero log GUID means
 * the writer stopped before its metadata updates reached their places; they
 * wait in the log (a circular buffer of entries, each a header, descriptors
 * and 4 KiB data sectors, CRC-32C over the whole entry). The active sequence
 * runs from the newest valid entry's `tail` to that entry, sequence numbers
 * consecutive; its writes (data sectors and zeroed ranges) are kept as 4 KiB
 * pages that every later read of the file sees. The input is never written.
 *
 * A log that names entries but holds no valid active sequence (no valid
 * entry, a break in the chain, a descriptor or data sector that does not
 * belong to its entry) is refused with E_FORMAT: guessing would read stale
 * metadata as current.
 */
import type fs from 'node:fs/promises';
import { VmdnError, type ErrorCode } from '../../errors.js';
import { readExact } from '../qcow2/tables.js';
import { crc32c } from './crc32c.js';
import {
  logEntryHeader, logDescriptor, logDataSector, LOG_SECTOR, LOGE_SIGNATURE, DESC_SIGNATURE, ZERO_SIGNATURE, DATA_SIGNATURE,
  CHECKSUM_AT, sameGuid,
} from './layout.js';

/** Replayed pages past this count (1 GiB) are refused rather than held in memory. */
const MAX_PAGES = 1 << 18;
const ZERO_PAGE = Buffer.alloc(LOG_SECTOR);

function fail(code: ErrorCode, path: string, msg: string, data: Record<string, unknown> = {}): never {
  throw new VmdnError(code, `${path}: ${msg}`, { path, ...data });
}

/** The file as it reads after log replay: 4 KiB pages from the log over the bytes on disk. */
export class FileView {
  readonly pages = new Map<number, Uint8Array>();
  constructor(
    readonly fh: fs.FileHandle,
    readonly path: string,
    readonly size: number,
  ) {}

  async read(off: number, len: number): Promise<Buffer> {
    if (off + len > this.size) fail('E_TRUNCATED', this.path, `read of ${off}+${len} past end of file (${this.size})`);
    const buf = await readExact(this.fh, this.path, off, len);
    if (this.pages.size === 0) return buf;
    for (let p = Math.floor(off / LOG_SECTOR); p * LOG_SECTOR < off + len; p++) {
      const page = this.pages.get(p);
      if (!page) continue;
      const s = Math.max(off, p * LOG_SECTOR);
      const e = Math.min(off + len, (p + 1) * LOG_SECTOR);
      buf.set(page.subarray(s - p * LOG_SECTOR, e - p * LOG_SECTOR), s - off);
    }
    return buf;
  }
}

interface Entry {
  readonly at: number;
  readonly length: number;
  readonly seq: bigint;
  readonly tail: number;
  readonly buf: Buffer;
  readonly descriptors: number;
}

/** The entry at `at` in the log `log` if it is whole and valid for `logGuid`, else null (a torn or stale entry). */
function entryAt(log: Buffer, at: number, logGuid: Uint8Array): Entry | null {
  if (at + LOG_SECTOR > log.length) return null;
  const h = logEntryHeader.parse(log, at);
  if (h.signature !== LOGE_SIGNATURE || !sameGuid(h.logGuid, logGuid)) return null;
  const len = h.entryLength;
  if (len === 0 || len % LOG_SECTOR !== 0 || len > log.length || h.tail % LOG_SECTOR !== 0 || h.tail >= log.length || h.sequenceNumber === 0n) return null;
  // An entry may wrap around the end of the circular log.
  const buf = at + len <= log.length ? log.subarray(at, at + len) : Buffer.concat([log.subarray(at), log.subarray(0, at + len - log.length)]);
  if (crc32c(buf, CHECKSUM_AT) !== h.checksum) return null;
  const descSectors = Math.ceil((64 + h.descriptorCount * 32) / LOG_SECTOR);
  if (descSectors * LOG_SECTOR > len) return null;
  return { at, length: len, seq: h.sequenceNumber, tail: h.tail, buf, descriptors: h.descriptorCount };
}

/** Apply the descriptors of one entry to `view`: data sectors and zero ranges, checked against the entry and the file. */
function apply(e: Entry, view: FileView): void {
  const descSectors = Math.ceil((64 + e.descriptors * 32) / LOG_SECTOR);
  let dataAt = descSectors * LOG_SECTOR;
  for (let i = 0; i < e.descriptors; i++) {
    const d = logDescriptor.parse(e.buf, 64 + i * 32);
    if (d.sequenceNumber !== e.seq) fail('E_FORMAT', view.path, `log entry ${e.seq}: descriptor ${i} belongs to sequence ${d.sequenceNumber}`);
    if (d.fileOffset % BigInt(LOG_SECTOR) !== 0n) fail('E_FORMAT', view.path, `log entry ${e.seq}: descriptor ${i} offset ${d.fileOffset} is not 4 KiB aligned`);
    const off = Number(d.fileOffset);
    if (d.signature === ZERO_SIGNATURE) {
      const n = Buffer.from(d.leadingOrZeroLength).readBigUInt64LE(0);
      if (n === 0n || n % BigInt(LOG_SECTOR) !== 0n) fail('E_FORMAT', view.path, `log entry ${e.seq}: zero length ${n} is not a positive multiple of 4 KiB`);
      if (d.fileOffset + n > BigInt(view.size)) fail('E_TRUNCATED', view.path, `log entry ${e.seq}: zeroes ${d.fileOffset}+${n}, past end of file`);
      if (view.pages.size + Number(n) / LOG_SECTOR > MAX_PAGES) fail('E_UNSUPPORTED', view.path, 'log replay touches more than 1 GiB');
      for (let p = off / LOG_SECTOR; p < (off + Number(n)) / LOG_SECTOR; p++) view.pages.set(p, ZERO_PAGE);
    } else if (d.signature === DESC_SIGNATURE) {
      if (dataAt + LOG_SECTOR > e.length) fail('E_FORMAT', view.path, `log entry ${e.seq}: more data descriptors than data sectors`);
      const s = logDataSector.parse(e.buf, dataAt);
      const seq = (BigInt(s.sequenceHigh) << 32n) | BigInt(s.sequenceLow);
      if (s.signature !== DATA_SIGNATURE || seq !== e.seq) fail('E_FORMAT', view.path, `log entry ${e.seq}: data sector ${i} is not part of the entry`);
      if (off + LOG_SECTOR > view.size) fail('E_TRUNCATED', view.path, `log entry ${e.seq}: writes at ${off}, past end of file`);
      if (view.pages.size >= MAX_PAGES) fail('E_UNSUPPORTED', view.path, 'log replay touches more than 1 GiB');
      const page = new Uint8Array(LOG_SECTOR);
      page.set(d.leadingOrZeroLength, 0);
      page.set(s.data, 8);
      page.set(d.trailingBytes, 4092);
      view.pages.set(off / LOG_SECTOR, page);
      dataAt += LOG_SECTOR;
    } else {
      fail('E_FORMAT', view.path, `log entry ${e.seq}: descriptor ${i} has an unknown signature 0x${d.signature.toString(16)}`);
    }
  }
}

/** Replay the log (`logOffset`, `logLength`, checked by the caller to lie in the file) into `view`. Returns the entries replayed. */
export async function replayLog(view: FileView, logOffset: number, logLength: number, logGuid: Uint8Array): Promise<number> {
  const log = await readExact(view.fh, view.path, logOffset, logLength);
  const valid = new Map<number, Entry>();
  let head: Entry | null = null;
  for (let at = 0; at < logLength; at += LOG_SECTOR) {
    const e = entryAt(log, at, logGuid);
    if (!e) continue;
    valid.set(at, e);
    if (!head || e.seq > head.seq) head = e;
  }
  if (!head) fail('E_FORMAT', view.path, 'the header names a log (the image was not closed cleanly) but the log holds no valid entry', { field: 'log' });
  // Walk from the tail to the head: every entry valid, each the next in sequence.
  const chain: Entry[] = [];
  let e = valid.get(head.tail);
  for (;;) {
    if (!e) fail('E_FORMAT', view.path, `log sequence ending at entry ${head.seq} is broken (no valid entry at ${chain.length ? 'the next position' : `its tail ${head.tail}`})`, { field: 'log' });
    if (chain.length && e.seq !== chain[chain.length - 1].seq + 1n) fail('E_FORMAT', view.path, `log sequence ending at entry ${head.seq} is broken (entry ${e.seq} follows ${chain[chain.length - 1].seq})`, { field: 'log' });
    chain.push(e);
    if (e === head) break;
    if (chain.length > logLength / LOG_SECTOR) fail('E_FORMAT', view.path, 'log sequence does not end', { field: 'log' });
    e = valid.get((e.at + e.length) % logLength);
  }
  const last = logEntryHeader.parse(head.buf);
  if (last.flushedFileOffset > BigInt(view.size) || last.lastFileOffset > BigInt(view.size)) {
    fail('E_TRUNCATED', view.path, `the log needs a file of ${last.flushedFileOffset} bytes; this one has ${view.size}`, { field: 'log' });
  }
  for (const x of chain) apply(x, view);
  return chain.length;
}
