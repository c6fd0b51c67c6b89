/**
 * An origin's signer of image records (docs/http-api.md, Signed image
 * records). Records are signed on request and the signature reused until
 * less than a margin of its validity is left, then signed anew: a served
 * record is never close to expiry, and nobody has to re-sign anything.
 *
 * Sequence numbers grow each time a name:tag is signed with a manifest other
 * than the one signed last, and survive restarts: the last one signed per
 * name is kept in the store's side records (kind "signed-names"). A store
 * without them gets the time in ms as the sequence, which grows as well
 * (unless the clock goes back).
 */
import { createHash } from 'node:crypto';
import { hasSideRecords, type ImageRecord, type SideRecords } from '../../store/types.js';
import type { Digest } from '../../store/digest.js';
import { encodeRecord, parseRecord, trustedComment, type SignedRecord } from '../wire/image-record.js';
import { sign, type SecretKey } from '../wire/minisign.js';

export const DEFAULT_VALIDITY_MS = 24 * 3600_000;
const KIND = 'signed-names';

export interface SignerOptions {
  /** How long a signed record is valid (default 24 h). */
  validityMs?: number;
  /** Re-sign when less than this part of the validity is left (default 0.5). */
  renewFraction?: number;
  /** The clock (tests). */
  now?: () => number;
}

interface Cached extends SignedRecord {
  manifest: Digest;
  expiresAt: number;
}

interface SeqState {
  manifest: Digest;
  seq: number;
}

export class RecordSigner {
  readonly stats = { signed: 0, reused: 0 };
  private readonly cache = new Map<string, Cached>();
  private readonly records: SideRecords | undefined;
  /** One signing at a time: two first requests for a name must not both take a new sequence number. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly validityMs: number;
  private readonly marginMs: number;
  private readonly now: () => number;

  constructor(readonly key: SecretKey, store: unknown, o: SignerOptions = {}) {
    this.records = store && hasSideRecords(store) ? store : undefined;
    this.validityMs = o.validityMs ?? DEFAULT_VALIDITY_MS;
    this.marginMs = this.validityMs * (o.renewFraction ?? 0.5);
    this.now = o.now ?? Date.now;
  }

  /** The signed record of a name as it is now: reused while fresh, else signed anew. */
  async sign(row: ImageRecord): Promise<SignedRecord> {
    const id = `${row.name}:${row.tag}`;
    const hit = this.cache.get(id);
    if (hit && hit.manifest === row.manifest && hit.expiresAt - this.now() > this.marginMs) {
      this.stats.reused++;
      return { record: hit.record, signature: hit.signature };
    }
    const next = this.queue.then(() => this.signNew(id, row));
    this.queue = next.catch(() => {});
    return next;
  }

  private async signNew(id: string, row: ImageRecord): Promise<SignedRecord> {
    const seq = await this.seqFor(id, row.manifest);
    const now = this.now();
    const text = encodeRecord({
      name: row.name, tag: row.tag, manifest: row.manifest, created: row.created, seq,
      signed: new Date(now).toISOString(), expires: new Date(now + this.validityMs).toISOString(),
    });
    const signature = sign(Buffer.from(text, 'utf8'), this.key, trustedComment(parseRecord(text)), `vmdn image record ${id}`);
    this.stats.signed++;
    this.cache.set(id, { record: text, signature, manifest: row.manifest, expiresAt: now + this.validityMs });
    return { record: text, signature };
  }

  /** The sequence number of `manifest` under name:tag: the last one if it is the manifest signed last, else the next. */
  private async seqFor(id: string, manifest: Digest): Promise<number> {
    if (!this.records) {
      const hit = this.cache.get(id);
      return hit?.manifest === manifest ? seqOf(hit.record) : Math.max(this.now(), hit ? seqOf(hit.record) + 1 : 0);
    }
    const key = createHash('sha256').update(id).digest('hex');
    const raw = await this.records.getRecord(KIND, key);
    let last: SeqState | undefined;
    try {
      last = raw && (JSON.parse(Buffer.from(raw).toString('utf8')) as SeqState);
    } catch {
      // a damaged state file must not restart the sequence low: start above any ms-based number
      last = { manifest: '', seq: this.now() };
    }
    if (last && last.manifest === manifest && Number.isSafeInteger(last.seq)) return last.seq;
    const seq = (Number.isSafeInteger(last?.seq) ? last!.seq : 0) + 1;
    await this.records.putRecord(KIND, key, Buffer.from(JSON.stringify({ name: id, manifest, seq })));
    return seq;
  }
}

const seqOf = (record: string) => parseRecord(record).seq;
