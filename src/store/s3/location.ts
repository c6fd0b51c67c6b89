/**
 * `s3://BUCKET[/PREFIX]?endpoint=URL&region=R` -> where an S3 store lives.
 * Credentials are not in the URL: the AWS SDK's usual chain finds them
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, ...).
 */
import { VmdnError } from '../../errors.js';

export interface S3Location {
  bucket: string;
  /** '' or ends with '/'. */
  prefix: string;
  endpoint?: string;
  region: string;
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export function isS3Url(s: string | undefined): s is string {
  return typeof s === 'string' && s.startsWith('s3://');
}

export function parseS3Url(s: string): S3Location {
  const bad = (why: string) => new VmdnError('E_USAGE', `--store ${s}: ${why} (expected s3://BUCKET[/PREFIX]?endpoint=URL&region=R)`, { store: s });
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw bad('not a URL');
  }
  if (u.protocol !== 's3:') throw bad('not s3://');
  if (u.username || u.password) throw bad('credentials do not go in the URL (use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or ~/.aws)');
  const bucket = u.hostname;
  if (!BUCKET.test(bucket)) throw bad(`bucket "${bucket}" is not a valid bucket name`);
  const p = decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, '');
  if (p && !PREFIX.test(p)) throw bad(`prefix "${p}" may hold only letters, digits, . _ - and /`);
  for (const k of u.searchParams.keys()) if (k !== 'endpoint' && k !== 'region') throw bad(`unknown parameter "${k}"`);
  const endpoint = u.searchParams.get('endpoint') ?? undefined;
  if (endpoint !== undefined && !/^https?:\/\/[^/]+\/?$/.test(endpoint)) throw bad('endpoint must be http(s)://HOST[:PORT]');
  const region = u.searchParams.get('region') ?? process.env.AWS_REGION ?? 'us-east-1';
  if (!/^[a-z0-9-]{1,40}$/.test(region)) throw bad('bad region');
  return { bucket, prefix: p ? `${p}/` : '', endpoint, region };
}
