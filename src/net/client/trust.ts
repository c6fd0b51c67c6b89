/**
 * The client's side of signed image records (docs/http-api.md): the keys it
 * trusts (`--trust FILE.pub`, and every *.pub in the trust directory) and
 * the highest sequence number it has seen per key and name, kept in the
 * trust directory's seen.json (written by temp file and rename). A record
 * is refused (E_UNTRUSTED, data.reason) when it is unsigned, malformed,
 * signed by another key or badly, for another name, expired, or older than
 * one seen before: whoever answers in between (an edge, a CDN, a proxy) can
 * delay a name's change until the record expires, but not forge or undo it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Digest } from '../../store/digest.js';
import { formatImageRef, type ImageRef } from '../../store/image-name.js';
import { VmdnError } from '../../errors.js';
import { keyIdHex, parsePublicKey, verify, type PublicKey } from '../wire/minisign.js';
import { parseRecord } from '../wire/image-record.js';

/** How an HttpStore checks a name's answer before it believes the manifest digest in it. */
export interface RecordCheck {
  check(ref: ImageRef, body: unknown, source: string): Promise<Digest>;
}

export const STATE_FILE = 'seen.json';
/** seen.json holds one small entry per key and name; far below this. */
const MAX_STATE = 16 << 20;

interface Seen {
  seq: number;
  manifest: Digest;
}

/** $VMDN_TRUST_DIR, else $XDG_CONFIG_HOME/vmdn/trust, else ~/.config/vmdn/trust. */
export function defaultTrustDir(): string {
  if (process.env.VMDN_TRUST_DIR) return path.resolve(process.env.VMDN_TRUST_DIR);
  const config = process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(config, 'vmdn', 'trust');
}

function readKey(file: string): PublicKey {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new VmdnError('E_USAGE', `cannot read trusted key ${file}: ${(err as Error).message}`);
  }
  return parsePublicKey(text, file);
}

export class RecordTrust implements RecordCheck {
  constructor(readonly keys: PublicKey[], readonly dir: string, private readonly now: () => number = Date.now) {}

  /**
   * The keys of `files` and of the trust directory's *.pub files. Undefined
   * when there are none (and no directory was asked for): names are then
   * taken as the server says, as before signed records.
   */
  static open(o: { files?: string[]; dir?: string; now?: () => number } = {}): RecordTrust | undefined {
    const dir = o.dir ? path.resolve(o.dir) : defaultTrustDir();
    const keys = (o.files ?? []).map(readKey);
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir).filter((n) => n.endsWith('.pub')).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new VmdnError('E_USAGE', `cannot read trust directory ${dir}: ${(err as Error).message}`);
    }
    keys.push(...names.map((n) => readKey(path.join(dir, n))));
    if (!keys.length && o.dir) throw new VmdnError('E_USAGE', `trust directory ${dir} holds no .pub key (and no --trust KEY.pub was given)`);
    return keys.length ? new RecordTrust(keys, dir, o.now) : undefined;
  }

  async check(ref: ImageRef, body: unknown, source: string): Promise<Digest> {
    const name = formatImageRef(ref);
    const refuse = (reason: string, why: string, data: Record<string, unknown> = {}) =>
      new VmdnError('E_UNTRUSTED', `refused the record of ${name} from ${source}: ${why}`, { reason, ref: name, url: source, ...data });
    const b = (typeof body === 'object' && body !== null ? body : {}) as { record?: unknown; signature?: unknown; manifest?: unknown };
    if (typeof b.record !== 'string' || typeof b.signature !== 'string') throw refuse('unsigned', 'not signed (no record and signature; is the origin started with --sign-key?)');
    let keyId: string;
    try {
      keyId = keyIdHex(verify(Buffer.from(b.record, 'utf8'), b.signature, this.keys).key.id);
    } catch (err) {
      if (!(err instanceof VmdnError)) throw err;
      throw refuse(String(err.data.reason), err.message, err.data);
    }
    let r: ReturnType<typeof parseRecord>;
    try {
      r = parseRecord(b.record);
    } catch (err) {
      throw refuse('malformed', (err as Error).message);
    }
    if (r.name !== ref.name || r.tag !== ref.tag) throw refuse('wrong-name', `signed for ${r.name}:${r.tag}`);
    if (b.manifest !== undefined && b.manifest !== r.manifest) throw refuse('mismatch', `signed for manifest ${r.manifest.slice(0, 12)} but names ${String(b.manifest).slice(0, 12)}`);
    if (Date.parse(r.expires) <= this.now()) throw refuse('expired', `expired at ${r.expires}`, { expires: r.expires });
    const id = `${keyId} ${name}`;
    const seen = this.readState()[id];
    if (seen && (r.seq < seen.seq || (r.seq === seen.seq && r.manifest !== seen.manifest))) {
      throw refuse('rollback', `older than one seen before (seq ${r.seq}, seen ${seen.seq})`, { seq: r.seq, seen: seen.seq });
    }
    if (!seen || r.seq > seen.seq) this.remember(id, { seq: r.seq, manifest: r.manifest });
    return r.manifest;
  }

  private get stateFile(): string {
    return path.join(this.dir, STATE_FILE);
  }

  private readState(): Record<string, Seen> {
    let text: string;
    try {
      const fd = fs.openSync(this.stateFile, 'r');
      try {
        if (fs.fstatSync(fd).size > MAX_STATE) throw new Error(`larger than ${MAX_STATE} bytes`);
        text = fs.readFileSync(fd, 'utf8');
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw this.damaged(err);
    }
    let j: { v?: unknown; seen?: unknown };
    try {
      j = JSON.parse(text) as typeof j;
    } catch (err) {
      throw this.damaged(err);
    }
    if (j?.v !== 1 || typeof j.seen !== 'object' || j.seen === null) throw this.damaged(new Error('not version 1'));
    const out: Record<string, Seen> = Object.create(null) as Record<string, Seen>;
    for (const [k, v] of Object.entries(j.seen as Record<string, Seen>)) {
      if (Number.isSafeInteger(v?.seq) && typeof v.manifest === 'string') out[k] = { seq: v.seq, manifest: v.manifest };
    }
    return out;
  }

  /** A lost update (two clients at once) only lets a later record pass that one of them saw already: no forgery. */
  private remember(id: string, s: Seen): void {
    const state = this.readState();
    state[id] = s;
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.stateFile}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify({ v: 1, seen: state }, null, 1)}\n`);
    fs.renameSync(tmp, this.stateFile);
  }

  private damaged(err: unknown): VmdnError {
    return new VmdnError('E_UNTRUSTED', `trust state ${this.stateFile} is unreadable (${(err as Error).message}): fix or remove it`, { reason: 'state', file: this.stateFile });
  }
}
