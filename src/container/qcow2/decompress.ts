/**
 * Decompression of one qcow2 compressed cluster. The stored byte range is
 * sector-rounded, so the compressed stream is usually followed by garbage (the
 * start of the next compressed cluster); like qemu, we stop as soon as exactly
 * one cluster has been produced and reject anything that yields less.
 */
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { VmdnError } from '../../errors.js';

type ZstdBinding = typeof import('zstd-napi/binding.js');

let zstd: ZstdBinding | undefined;
function zstdBinding(): ZstdBinding {
  // The binding is CommonJS over a native addon: named ESM imports cannot see its exports.
  zstd ??= createRequire(import.meta.url)('zstd-napi/binding.js') as ZstdBinding;
  return zstd;
}

/** Larger windows than this cannot come from a single <= 2 MiB cluster; the cap bounds memory on hostile frames. */
const ZSTD_WINDOW_LOG_MAX = 24;

export type Decompress = (src: Uint8Array, where: string) => Uint8Array;

function corrupt(where: string, why: string, cause?: unknown): VmdnError {
  return new VmdnError('E_FORMAT', `${where}: corrupt compressed cluster (${why})`, {}, { cause });
}

export function deflateDecompressor(clusterSize: number): Decompress {
  return (src, where) => {
    let out: Buffer;
    try {
      // Z_SYNC_FLUSH: an incomplete stream is not an error in itself; the length check below is.
      out = zlib.inflateRawSync(src, { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: clusterSize });
    } catch (err) {
      throw corrupt(where, (err as Error).message, err);
    }
    if (out.length !== clusterSize) throw corrupt(where, `inflated to ${out.length} bytes, expected ${clusterSize}`);
    return out;
  };
}

export function zstdDecompressor(clusterSize: number): Decompress {
  const b = zstdBinding();
  const dctx = new b.DCtx();
  dctx.setParameter(b.DParameter.windowLogMax, ZSTD_WINDOW_LOG_MAX);
  return (src, where) => {
    const out = Buffer.alloc(clusterSize);
    let outPos = 0;
    let inPos = 0;
    let ret = 0;
    try {
      dctx.reset(b.ResetDirective.sessionOnly);
      // Same loop as qemu: the data may hold several frames and trailing bytes;
      // every step must make progress, so this terminates.
      while (outPos < clusterSize) {
        const [hint, produced, consumed] = dctx.decompressStream(out.subarray(outPos), src.subarray(inPos));
        if (produced === 0 && consumed === 0) throw corrupt(where, `zstd stream ended after ${outPos} of ${clusterSize} bytes`);
        outPos += produced;
        inPos += consumed;
        ret = hint;
      }
    } catch (err) {
      if (err instanceof VmdnError) throw err;
      throw corrupt(where, (err as Error).message, err);
    }
    // A frame still open after a full cluster means the data decodes to more than a cluster.
    if (ret !== 0) throw corrupt(where, 'zstd frame longer than a cluster');
    return out;
  };
}
