/**
 * One `POST /v1/objects/batch` exchange (docs/http-api.md, Batches), the
 * client half: records are parsed as they arrive and handed to `accept` in
 * groups of about `groupBytes`. A group's records are views of the response's
 * chunks as Node's HTTP parser gave them (each a buffer of its own), or, for
 * a record split across two chunks, a copy of its own; groups end between
 * chunks, so no buffer holds records of two groups and the receiver may move
 * a group's buffers to a worker whole (LocalStore acceptEncodedMany with
 * `whole`). Copying every record into an arena was ~0.15 s of a pull's main
 * thread for 181 MB; now only the split ones (about one per chunk) are copied.
 */
import http from 'node:http';
import https from 'node:https';
import type { Digest } from '../../store/digest.js';
import { VmdnError } from '../../errors.js';
import { BATCH_PATH, BatchParser } from '../wire/batch.js';

/** Received batch bytes waiting for `accept` before the response is paused (bounds memory). */
export const BATCH_PENDING_BYTES = 16 << 20;

/** Every buffer exchangeBatch made a group's records of: it holds nothing another group needs. */
const arenas = new WeakSet<ArrayBufferLike>();

/** A buffer that is all of its ArrayBuffer (one of Node's body chunks is): it may be moved to a worker. */
const ownsAll = (b: Buffer) => b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer;

/** Whether `records` are one batch group's, made of buffers that hold nothing another group needs: they may be moved whole. */
export function fromArenas(records: readonly BatchRecord[]): boolean {
  return records.every((r) => arenas.has(r.encoded.buffer));
}

/** One object of a batch response, as it arrived (not yet verified). */
export interface BatchRecord {
  digest: Digest;
  encoded: Buffer;
}

/** What the exchange needs of its HttpStore. */
export interface BatchHost {
  base: string;
  agent: http.Agent;
  stats: { requests: number; objectsFetched: number; bytesFetched: number; corrupt: number };
  timeoutMs: number;
  /** Arms the attempt's overall deadline; returns the disarm function. */
  deadline(req: http.ClientRequest, moved: () => number): () => void;
}

export interface BatchOptions {
  signal?: AbortSignal;
  groupBytes: number;
  /** Called once the response has ended (every record handed to `accept`), before `accept` has finished with them. */
  onBody?: () => void;
}

export interface BatchExchange {
  /** The HTTP status; 0 when the exchange failed (refused, cut, timed out, a confused body). */
  status: number;
  /** Asked for and not received intact (to be fetched one by one). */
  missing: Digest[];
  /** Received and refused by `accept` as corrupt (to be fetched past caches). */
  corrupt: Digest[];
}

/**
 * Ask for `digests`; each group of records goes to `accept`, which resolves
 * to one entry per record: undefined when kept, else the error
 * (E_CORRUPT_OBJECT: reported in `corrupt`; any other is thrown once the
 * exchange has ended). With groupBytes 0 every record is a group (and a
 * buffer) of its own.
 */
export async function exchangeBatch(h: BatchHost, digests: Digest[], accept: (records: BatchRecord[]) => Promise<unknown[]>, o: BatchOptions): Promise<BatchExchange> {
  const signal = o.signal;
  const wanted = new Set(digests);
  const corrupt: Digest[] = [];
  const pending = new Set<Promise<void>>();
  let pendingBytes = 0;
  let fatal: { err: unknown } | undefined;
  const body = Buffer.from(JSON.stringify({ digests }));
  const mod = h.base.startsWith('https:') ? https : http;
  h.stats.requests++;
  let moved = body.length;
  // parsed records are no longer `wanted`: whatever way the response ends, each must reach `accept`
  let sendRest = () => {};
  const status = await new Promise<number>((resolve) => {
    const req = mod.request(h.base + BATCH_PATH, { method: 'POST', agent: h.agent, signal, headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        res.on('close', () => resolve(res.statusCode ?? 0));
        return;
      }
      let group: BatchRecord[] = [];
      let groupBytes = 0;
      const send = () => {
        if (!group.length) return;
        const records = group;
        const size = groupBytes;
        group = [];
        groupBytes = 0;
        const p: Promise<void> = Promise.resolve().then(() => accept(records)).then((errs) => {
          records.forEach((r, i) => {
            const err = errs[i];
            if (err === undefined) return;
            if (err instanceof VmdnError && err.code === 'E_CORRUPT_OBJECT') {
              h.stats.corrupt++;
              corrupt.push(r.digest);
            } else fatal ??= { err };
          });
        }, (err) => {
          fatal ??= { err };
        }).finally(() => {
          pending.delete(p);
          pendingBytes -= size;
          if (pendingBytes < BATCH_PENDING_BYTES / 2) res.resume();
        });
        pending.add(p);
      };
      sendRest = send;
      // a record within one chunk is a view of it; one split across chunks is copied into a buffer of its own
      const grouped = o.groupBytes > 0;
      const alloc = grouped ? (len: number) => {
        const b = Buffer.allocUnsafeSlow(len);
        arenas.add(b.buffer);
        return b;
      } : undefined;
      const viewOf = grouped ? (chunk: Buffer, start: number, end: number) => {
        if (!ownsAll(chunk)) return undefined;
        arenas.add(chunk.buffer);
        return chunk.subarray(start, end);
      } : undefined;
      const parser = new BatchParser(wanted, (digest, encoded) => {
        h.stats.objectsFetched++;
        h.stats.bytesFetched += encoded.length;
        pendingBytes += encoded.length;
        groupBytes += encoded.length;
        group.push({ digest, encoded });
        if (!grouped) send();
      }, alloc, viewOf);
      res.on('data', (chunk: Buffer) => {
        moved += chunk.length;
        try {
          parser.push(chunk);
        } catch {
          req.destroy(); // a confused server: take the rest one by one
        }
        // only between chunks: every record viewing this one is in the group
        if (groupBytes >= o.groupBytes) send();
        // groups already handed over are what resumes a paused response (the one being cut is about groupBytes)
        if (pendingBytes >= BATCH_PENDING_BYTES) res.pause();
      });
      res.on('error', () => {});
      res.on('close', () => {
        // records parsed before a cut are intact (verified by accept): keep them
        send();
        resolve(res.complete && parser.atBoundary ? 200 : 0);
      });
    });
    req.setTimeout(h.timeoutMs, () => req.destroy());
    // what did not come within the deadline is fetched one by one
    const disarm = h.deadline(req, () => moved);
    req.on('close', disarm);
    req.on('error', () => resolve(0));
    req.end(body);
  });
  sendRest();
  o.onBody?.();
  while (pending.size) await Promise.all([...pending]);
  signal?.throwIfAborted();
  if (fatal) throw fatal.err;
  return { status, missing: [...wanted], corrupt };
}
