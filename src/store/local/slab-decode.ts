/**
 * Worker side of slab reads (slab-reads.ts): decode and verify each object
 * straight into its slot of the shared slab. An object of any size but its
 * slot's is refused before a byte is decoded, so a bad object never writes
 * outside its slot. Each object succeeds or fails alone.
 */
import { decodeObjectInto } from '../codec.js';
import { readPlaced, type ManyOutcome, type Placed } from './read-runs.js';

export interface SlabItem extends Placed {
  /** Where its slot starts in the slab, and the object's size by the manifest (the slot's size). */
  at: number;
  size: number;
}

export function decodeIntoSlab(items: SlabItem[], slab: SharedArrayBuffer, source: string, onError: (err: unknown) => ManyOutcome): ManyOutcome[] {
  return items.map((it, i) => {
    try {
      decodeObjectInto(it.digest, readPlaced(items, i, source), new Uint8Array(slab, it.at, it.size), source);
      return { at: it.at, size: it.size };
    } catch (err) {
      return onError(err);
    }
  });
}
