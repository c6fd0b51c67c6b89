/**
 * Per-cluster compression for the qcow2 writer, kept to one function so it
 * can later move to worker threads without touching the writer's layout code.
 * Formats follow qemu (block/qcow2-threads.c): zstd clusters are plain zstd
 * frames; deflate clusters are raw deflate with a 4 KiB window (qemu inflates
 * with windowBits -12, so a larger window would produce unreadable clusters).
 */
import zlib from 'node:zlib';
import { Compressor } from 'zstd-napi';

export type CompressionKind = 'zstd' | 'deflate';

/** Returns the compressed bytes, or null when compressing does not save space (store uncompressed). */
export type ClusterCompressor = (cluster: Uint8Array) => Uint8Array | null;

/** zstd's default level, which is also what qemu-img uses. */
const ZSTD_LEVEL = 3;

export function makeClusterCompressor(kind: CompressionKind, clusterSize: number): ClusterCompressor {
  // qemu compresses into a cluster_size - 1 buffer and stores the cluster raw if it does not fit.
  const fits = (c: Uint8Array): Uint8Array | null => (c.length < clusterSize ? c : null);
  if (kind === 'zstd') {
    const z = new Compressor();
    z.setParameters({ compressionLevel: ZSTD_LEVEL });
    return (cluster) => fits(z.compress(cluster));
  }
  const opts: zlib.ZlibOptions = { windowBits: 12, memLevel: 9, level: zlib.constants.Z_DEFAULT_COMPRESSION };
  return (cluster) => fits(zlib.deflateRawSync(cluster, opts));
}
