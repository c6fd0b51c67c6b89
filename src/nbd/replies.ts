/**
 * Structured replies (negotiated with NBD_OPT_STRUCTURED_REPLY): a READ
 * answered as OFFSET_DATA chunks for the image's data and OFFSET_HOLE chunks
 * for its holes (no zeros read, allocated or sent), BLOCK_STATUS answered
 * with base:allocation extents, errors as ERROR chunks. Each chunk goes to
 * the socket in one write call, so chunks of replies in flight at once never
 * interleave inside a chunk; the last chunk of a reply carries
 * NBD_REPLY_FLAG_DONE. A READ's chunks all go in one write call.
 */
import type { Socket } from 'node:net';
import type { BlockDevice, Lease } from './device.js';
import type { Run } from './allocation.js';
import { writeAll } from './socket-io.js';
import {
  ErrorChunk, HoleChunk, LIMITS, META_BASE_ALLOCATION_ID, REPLY_FLAG_DONE, REPLY_TYPE, STATE_HOLE, STATE_ZERO,
  STRUCTURED_REPLY_MAGIC, StructuredReply,
} from './protocol.js';

/** A chunk's header and payload, to be written with others in one call. */
function chunkParts(handle: Uint8Array, type: number, done: boolean, payload: Uint8Array[]): Uint8Array[] {
  let length = 0;
  for (const p of payload) length += p.length;
  const head = StructuredReply.write({ magic: STRUCTURED_REPLY_MAGIC, flags: done ? REPLY_FLAG_DONE : 0, type, handle, length });
  return [head, ...payload];
}

function chunk(sock: Socket, handle: Uint8Array, type: number, done: boolean, payload: Uint8Array[]): Promise<void> {
  return writeAll(sock, chunkParts(handle, type, done, payload));
}

/** An ERROR chunk that ends the reply. */
export function errorChunk(sock: Socket, handle: Uint8Array, errno: number, message = ''): Promise<void> {
  const msg = Buffer.from(message.slice(0, 200));
  return chunk(sock, handle, REPLY_TYPE.ERROR, true, [ErrorChunk.write({ error: errno, messageLength: msg.length }), msg]);
}

const offsetBytes = (offset: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(offset));
  return b;
};

/**
 * A READ of [offset, offset+length) (already checked against the device): its
 * runs as data and hole chunks, or, with `df` (or too many runs), one data
 * chunk. Returns the bytes sent as data. A failure to read ends the reply with
 * an ERROR chunk and rethrows.
 */
export async function structuredRead(sock: Socket, handle: Uint8Array, dev: BlockDevice, offset: number, length: number, df: boolean): Promise<number> {
  if (length === 0) {
    await chunk(sock, handle, REPLY_TYPE.NONE, true, []);
    return 0;
  }
  let runs: Run[] = df ? [] : dev.map(offset, length, LIMITS.maxReadChunks);
  const covered = runs.reduce((n, r) => n + r.length, 0);
  if (df || covered !== length) runs = [{ offset, length, data: true }];
  // every data run read at once, then the whole reply in one write: a chunk per write cost a
  // syscall (and a wake-up of the client) per run, most of them small hole chunks
  const reads = runs.map((r) => (r.data ? dev.readLeased(r.offset, r.length) : null));
  // a later run's failure waits, handled, until its turn (an unhandled rejection would end the process)
  for (const p of reads) p?.catch(() => undefined);
  // the leased pieces stay held until the socket took them (the base reuses their memory after)
  const leases: Lease[] = [];
  const release = () => {
    for (const l of leases) l.release();
  };
  const parts: Uint8Array[] = [];
  let sent = 0;
  for (let i = 0; i < runs.length; i++) {
    const r = runs[i]!;
    const done = i === runs.length - 1;
    if (!r.data) {
      parts.push(...chunkParts(handle, REPLY_TYPE.OFFSET_HOLE, done, [HoleChunk.write({ offset: BigInt(r.offset), length: r.length })]));
      continue;
    }
    let lease: Lease;
    try {
      lease = await reads[i]!;
    } catch (err) {
      // the later runs' leases are let go as they come; the chunks before the failed run still go out
      // (the caller's ERROR chunk ends the reply)
      for (const p of reads.slice(i + 1)) p?.then((l) => l.release(), () => undefined);
      await writeAll(sock, parts, release);
      throw err;
    }
    leases.push(lease);
    parts.push(...chunkParts(handle, REPLY_TYPE.OFFSET_DATA, done, [offsetBytes(r.offset), ...lease.pieces]));
    sent += r.length;
  }
  await writeAll(sock, parts, release);
  return sent;
}

/** A BLOCK_STATUS reply for base:allocation: extents from `offset`, one if `reqOne`, at most LIMITS.maxExtents. */
export function blockStatus(sock: Socket, handle: Uint8Array, dev: BlockDevice, offset: number, length: number, reqOne: boolean): Promise<void> {
  const runs = dev.map(offset, length, reqOne ? 1 : LIMITS.maxExtents);
  const body = Buffer.alloc(4 + 8 * runs.length);
  body.writeUInt32BE(META_BASE_ALLOCATION_ID, 0);
  runs.forEach((r, i) => {
    body.writeUInt32BE(r.length, 4 + 8 * i);
    body.writeUInt32BE(r.data ? 0 : STATE_HOLE | STATE_ZERO, 8 + 8 * i);
  });
  return chunk(sock, handle, REPLY_TYPE.BLOCK_STATUS, true, [body]);
}
