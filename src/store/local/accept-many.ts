/**
 * The parts of LocalStore.acceptEncodedMany that do not need the store:
 * verifying received objects here or in a codec worker, and which buffers
 * move to the worker. Small functions of one shape each, on purpose: as one
 * function, V8 compiled the whole of acceptEncodedMany (~0.2 s of compiler
 * thread per pull) and threw that away on a map it had not seen.
 */
import type { CodecPool } from './codec-pool.js';
import type { AcceptOutcome } from './codec-worker.js';
import { decodeObject } from '../codec.js';
import type { Digest } from '../digest.js';
import { asVmdnError, VmdnError, type ErrorCode } from '../../errors.js';

/** One object handed to acceptEncodedMany. */
export interface AcceptedItem {
  digest: Digest;
  encoded: Uint8Array;
  offsets?: number[];
}

export type PackPlace = { pack: string; offset: number };
/** An object's verification: its decoded size, or why it was refused. */
export type VerifyOutcome = { size: number } | VmdnError;

/*
 * Arrays built by push, not Array.prototype.map: map's results came in two elements kinds, and
 * appendMany and indexVerified were deoptimised on the second ("wrong map") and compiled again.
 */

/** Each item's stored (encoded) size. */
export function storedSizesOf(items: AcceptedItem[]): number[] {
  const out: number[] = [];
  for (const it of items) out.push(it.encoded.length);
  return out;
}

/** The items as pack entries (PackWriter.appendMany). */
export function packFrames(items: AcceptedItem[]): Array<{ digest: string; frame: Uint8Array }> {
  const out: Array<{ digest: string; frame: Uint8Array }> = [];
  for (const it of items) out.push({ digest: it.digest, frame: it.encoded });
  return out;
}

/** Decode and verify on this thread (a store without workers). */
export function verifyHere(items: AcceptedItem[], source: string): VerifyOutcome[] {
  return items.map((it) => {
    try {
      return { size: decodeObject(it.digest, it.encoded, source).length };
    } catch (err) {
      return asVmdnError(err);
    }
  });
}

/** Decode and verify in one trip to a codec worker (written into `outPath` at the items' offsets); the bytes move there. */
export async function verifyInWorker(pool: CodecPool, items: AcceptedItem[], o: { source: string; outPath?: string; whole?: boolean }): Promise<VerifyOutcome[]> {
  const transfer: ArrayBuffer[] = [];
  const sent = o.whole ? movedWhole(items, transfer) : movedEach(items, transfer);
  const r = await pool.run({ op: 'acceptMany', items: sent, source: o.source, outPath: o.outPath }, transfer);
  return r.outcomes!.map(fromWorker);
}

/** `whole`: the items' buffers hold nothing else (a batch group's arena): each moves once, items sharing it. */
function movedWhole(items: AcceptedItem[], transfer: ArrayBuffer[]): AcceptedItem[] {
  if (!items.every((it) => it.encoded.buffer instanceof ArrayBuffer)) return movedEach(items, transfer);
  let last: ArrayBufferLike | undefined;
  for (const it of items) {
    const b = it.encoded.buffer;
    if (b !== last && !transfer.includes(b as ArrayBuffer)) transfer.push(b as ArrayBuffer);
    last = b;
  }
  return items.map(sentItem);
}

/** Each item's buffer moves when the item owns it whole; a small Buffer may be a slice of Node's shared pool: that one is copied. */
function movedEach(items: AcceptedItem[], transfer: ArrayBuffer[]): AcceptedItem[] {
  return items.map((it) => {
    const e = it.encoded;
    const owns = e.byteOffset === 0 && e.byteLength === e.buffer.byteLength && e.buffer instanceof ArrayBuffer && !transfer.includes(e.buffer);
    const encoded = owns ? e : new Uint8Array(e);
    transfer.push(encoded.buffer as ArrayBuffer);
    return { digest: it.digest, encoded, offsets: it.offsets };
  });
}

function sentItem(it: AcceptedItem): AcceptedItem {
  return { digest: it.digest, encoded: it.encoded, offsets: it.offsets };
}

function fromWorker(out: AcceptOutcome): VerifyOutcome {
  return 'error' in out ? new VmdnError(out.error.code as ErrorCode, out.error.message, out.error.data) : out;
}
