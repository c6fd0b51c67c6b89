/**
 * Image names in the bucket, so origins on several machines share them with
 * no other state. One S3 object per name (`names/NAME/TAG`, JSON); the
 * objects an image needs in `refs/MANIFEST` (32-byte digests back to back,
 * written once). An update is a conditional PUT: If-Match on the ETag read
 * (If-None-Match: * to create), retried on 412, so two writers never lose
 * each other's update silently: the last complete write wins, whole.
 */
import type { Digest } from '../digest.js';
import { isDigest } from '../digest.js';
import type { ImageNames, ImageRecord } from '../types.js';
import type { S3 } from './client.js';
import { VmdnError } from '../../errors.js';

export const NAMES = 'names/';
export const REFS = 'refs/';
export const nameKey = (name: string, tag: string) => `${NAMES}${encodeURIComponent(name)}/${tag}`;

/** What set() needs from the store: its objects up, and which of `refs` are absent after that. */
export interface NamesBackend {
  ensurePresent(refs: Digest[]): Promise<Digest[]>;
}

export function parseRecord(bytes: Uint8Array, key: string): ImageRecord {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new VmdnError('E_FORMAT', `name record ${key}: not JSON`, { key });
  }
  const ok = j && typeof j === 'object' && j.v === 1 && typeof j.name === 'string' && typeof j.tag === 'string' && isDigest(j.manifest)
    && typeof j.created === 'string' && typeof j.format === 'string'
    && [j.virtualSize, j.allocatedSize, j.dataSize].every((n) => Number.isSafeInteger(n) && (n as number) >= 0);
  if (!ok) throw new VmdnError('E_FORMAT', `name record ${key}: bad fields`, { key });
  return { name: j.name as string, tag: j.tag as string, manifest: j.manifest as Digest, created: j.created as string, virtualSize: j.virtualSize as number, allocatedSize: j.allocatedSize as number, dataSize: j.dataSize as number, format: j.format as string };
}

export function decodeRefs(bytes: Uint8Array, key: string): Digest[] {
  if (bytes.length % 32) throw new VmdnError('E_FORMAT', `refs ${key}: ${bytes.length} bytes is not a list of digests`, { key });
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Digest[] = [];
  for (let p = 0; p < b.length; p += 32) out.push(b.toString('hex', p, p + 32));
  return out;
}

export class S3Names implements ImageNames {
  constructor(private readonly s3: S3, private readonly backend: NamesBackend) {}

  async list(): Promise<ImageRecord[]> {
    const keys: string[] = [];
    for await (const o of this.s3.list(NAMES)) keys.push(o.key);
    const out: ImageRecord[] = [];
    for (const k of keys) {
      const r = await this.s3.get(k);
      if (r) out.push(parseRecord(r.body, k));
    }
    return out.sort((a, b) => a.name.localeCompare(b.name) || a.tag.localeCompare(b.tag));
  }

  async get(name: string, tag: string): Promise<ImageRecord | undefined> {
    const k = nameKey(name, tag);
    const r = await this.s3.get(k);
    return r && parseRecord(r.body, k);
  }

  async set(record: ImageRecord, refs: Iterable<Digest>): Promise<void> {
    const all = [...new Set([...refs, record.manifest])];
    const absent = await this.backend.ensurePresent(all);
    if (absent.length) {
      throw new VmdnError('E_STORE', `cannot name ${record.name}:${record.tag}: ${absent.length} objects it needs are not in the store (${absent[0]!.slice(0, 12)}...)`, { missing: absent.slice(0, 10) });
    }
    // the references first, once per manifest: a name is never seen without them (gc reads them)
    const refsKey = `${REFS}${record.manifest}`;
    if (!(await this.s3.head(refsKey))) await this.s3.putIf(refsKey, Buffer.concat(all.map((d) => Buffer.from(d, 'hex'))), { create: true });
    const k = nameKey(record.name, record.tag);
    const body = Buffer.from(JSON.stringify({ v: 1, ...record }));
    for (let attempt = 0; attempt < 20; attempt++) {
      const cur = await this.s3.head(k);
      if (await this.s3.putIf(k, body, cur ? { etag: cur.etag } : { create: true })) return;
    }
    throw new VmdnError('E_STORE', `name ${record.name}:${record.tag}: 20 conditional writes lost to other writers`, { key: k });
  }

  async remove(name: string, tag: string): Promise<boolean> {
    const k = nameKey(name, tag);
    if (!(await this.s3.head(k))) return false;
    await this.s3.delete(k);
    return true;
  }
}
