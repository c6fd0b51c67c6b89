/**
 * The few S3 calls the store makes, over the AWS SDK v3, with S3's answers
 * mapped to vmdn's errors. Path-style addressing and checksums only when
 * required: Ceph RGW refuses the SDK's default streamed checksums.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { VmdnError } from '../../errors.js';
import type { S3Location } from './location.js';

export interface Listed { key: string; size: number; modified: Date; etag: string }

type S3Err = { name?: string; $metadata?: { httpStatusCode?: number }; message?: string };
const status = (e: unknown) => (e as S3Err).$metadata?.httpStatusCode;

type Sdk = typeof import('@aws-sdk/client-s3');

/** Requests this process sent to the S3 server (one per call; the SDK's own retries not counted). */
export interface S3Counts { get: number; /** ranged GETs: object reads from packs */ getRange: number; head: number; put: number; list: number; delete: number; bytesIn: number; bytesOut: number }

export class S3 {
  readonly client: S3Client;
  readonly counts: S3Counts = { get: 0, getRange: 0, head: 0, put: 0, list: 0, delete: 0, bytesIn: 0, bytesOut: 0 };

  /**
   * The SDK is loaded here, on first use, not when the CLI starts: importing it
   * costs about half a second, which every vmdn command paid before, S3 or not.
   */
  static async connect(loc: S3Location): Promise<S3> {
    return new S3(loc, await import('@aws-sdk/client-s3'));
  }

  private constructor(readonly loc: S3Location, private readonly sdk: Sdk) {
    // vmdn supports node 20: the SDK's notice about its own future versions is noise on every command's stderr
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client = new sdk.S3Client({
      endpoint: loc.endpoint, region: loc.region, forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 6,
    });
  }

  private fail(e: unknown, what: string, key: string): never {
    if (e instanceof VmdnError) throw e;
    const s = status(e);
    const code = s === 403 || s === 401 ? 'E_AUTH' : s === undefined ? 'E_UNREACHABLE' : 'E_STORE';
    throw new VmdnError(code, `S3 ${what} ${this.loc.bucket}/${key}: ${(e as S3Err).name ?? ''} ${(e as S3Err).message ?? ''}`.trim(), { key, status: s }, { cause: e });
  }

  /** Create the bucket unless it exists (a bucket someone else owns is an error). */
  async ensureBucket(create: boolean): Promise<void> {
    try {
      await this.client.send(new this.sdk.HeadBucketCommand({ Bucket: this.loc.bucket }));
    } catch (e) {
      if (status(e) !== 404) this.fail(e, 'head bucket', '');
      if (!create) throw new VmdnError('E_NOT_FOUND', `no S3 bucket ${this.loc.bucket} ("vmdn import" creates one)`, { bucket: this.loc.bucket });
      try {
        await this.client.send(new this.sdk.CreateBucketCommand({ Bucket: this.loc.bucket }));
      } catch (e2) {
        if ((e2 as S3Err).name !== 'BucketAlreadyOwnedByYou') this.fail(e2, 'create bucket', '');
      }
    }
  }

  /** The object's bytes (or a byte range), with its ETag; undefined when absent. */
  async get(key: string, range?: { start: number; length: number }, signal?: AbortSignal): Promise<{ body: Uint8Array; etag: string } | undefined> {
    if (range) this.counts.getRange++;
    else this.counts.get++;
    try {
      const r = await this.client.send(new this.sdk.GetObjectCommand({
        Bucket: this.loc.bucket, Key: this.loc.prefix + key,
        Range: range ? `bytes=${range.start}-${range.start + range.length - 1}` : undefined,
      }), { abortSignal: signal });
      const body = await r.Body!.transformToByteArray();
      this.counts.bytesIn += body.length;
      if (range && body.length !== range.length) throw new VmdnError('E_CORRUPT_OBJECT', `S3 ${key}: range of ${range.length} bytes answered with ${body.length}`, { key });
      return { body, etag: r.ETag ?? '' };
    } catch (e) {
      if (status(e) === 404) return undefined;
      this.fail(e, 'GET', key);
    }
  }

  async head(key: string): Promise<{ etag: string; size: number } | undefined> {
    this.counts.head++;
    try {
      const r = await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: this.loc.bucket, Key: this.loc.prefix + key }));
      return { etag: r.ETag ?? '', size: r.ContentLength ?? 0 };
    } catch (e) {
      if (status(e) === 404) return undefined;
      this.fail(e, 'HEAD', key);
    }
  }

  /**
   * PUT with a condition: `create` (If-None-Match: *) or an ETag the current
   * object must have (If-Match). False when the condition failed (412, or 409
   * for a concurrent conditional write). The ETag goes unquoted: Ceph RGW 16
   * compares If-Match against the bare ETag and answers 412 to a quoted one.
   */
  async putIf(key: string, body: Uint8Array, cond: { create: true } | { etag: string }, signal?: AbortSignal): Promise<boolean> {
    this.counts.put++;
    this.counts.bytesOut += body.length;
    try {
      await this.client.send(new this.sdk.PutObjectCommand({
        Bucket: this.loc.bucket, Key: this.loc.prefix + key, Body: body, ContentLength: body.length,
        ...('create' in cond ? { IfNoneMatch: '*' } : { IfMatch: cond.etag.replace(/"/g, '') }),
      }), { abortSignal: signal });
      return true;
    } catch (e) {
      if (status(e) === 412 || status(e) === 409) return false;
      this.fail(e, 'PUT', key);
    }
  }

  async delete(key: string): Promise<void> {
    this.counts.delete++;
    try {
      await this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.loc.bucket, Key: this.loc.prefix + key }));
    } catch (e) {
      if (status(e) !== 404) this.fail(e, 'DELETE', key);
    }
  }

  /** Every object under `sub` (keys relative to the store's prefix). */
  async *list(sub: string): AsyncIterable<Listed> {
    let token: string | undefined;
    do {
      let r;
      this.counts.list++;
      try {
        r = await this.client.send(new this.sdk.ListObjectsV2Command({ Bucket: this.loc.bucket, Prefix: this.loc.prefix + sub, ContinuationToken: token }));
      } catch (e) {
        this.fail(e, 'LIST', sub);
      }
      for (const o of r.Contents ?? []) {
        yield { key: o.Key!.slice(this.loc.prefix.length), size: o.Size ?? 0, modified: o.LastModified ?? new Date(0), etag: o.ETag ?? '' };
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }

  close(): void {
    this.client.destroy();
  }
}
