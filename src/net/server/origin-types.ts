/** What the origin's parts (origin.ts, origin-objects.ts, origin-uploads.ts) share. */
import type { EncodedFiles, ImageStore, StoreTotals, WriterLease } from '../../store/types.js';

/** What an origin serves from: any store with image names; local files and a writer lease are used when it has them. */
export type OriginStore = ImageStore & Partial<EncodedFiles & WriterLease & StoreTotals>;

export interface OriginStats {
  requests: number;
  objectRequests: number;
  objectBytesServed: number;
  objectsUploaded: number;
  bytesUploaded: number;
  authFailures: number;
}
