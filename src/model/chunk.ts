/** What every chunk list in the formats shares (docs/format.md). */
import type { Digest } from '../store/digest.js';

/** Largest object a chunk may be: chunkers cut below it, parsers refuse above it. */
export const MAX_CHUNK = 16 << 20;

/** A chunk placed at an offset (of a disk, a stream or a tar): [offset, length, digest]. */
export type ChunkEntry = [offset: number, length: number, digest: Digest];
