/**
 * Hand-made hostile zstd frames (RFC 8878): a frame of RLE blocks regenerates
 * 128 KiB per 4 bytes on the wire, so a 64 KiB frame holds 2 GiB of zeros
 * without a test ever having to compress (or hold) them.
 */
const MAGIC = 0xfd2fb528;
const BLOCK = 128 << 10;

/** One frame of `total` zero bytes in RLE blocks; `declare` puts the size in its header. */
export function rleFrame(total: number, declare: boolean): Buffer {
  // frame header descriptor: FCS 8 bytes (flag 3) or none (0); no single segment, so a window descriptor follows
  const head = Buffer.alloc(declare ? 14 : 6);
  head.writeUInt32LE(MAGIC, 0);
  head[4] = declare ? 0xc0 : 0x00;
  head[5] = (17 - 10) << 3; // window 2^17: one block
  if (declare) head.writeBigUInt64LE(BigInt(total), 6);
  const blocks: Buffer[] = [head];
  for (let left = total; left > 0 || blocks.length === 1; left -= BLOCK) {
    const size = Math.min(BLOCK, Math.max(left, 0));
    const last = left <= BLOCK ? 1 : 0;
    const b = Buffer.alloc(4);
    b.writeUIntLE(last | (1 << 1) | (size << 3), 0, 3); // RLE block of `size` copies of the next byte (0)
    blocks.push(b);
  }
  return Buffer.concat(blocks);
}

/** A skippable frame (ignored by zstd decoders) carrying `payload`. */
export function skippableFrame(payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(0x184d2a50, 0);
  head.writeUInt32LE(payload.length, 4);
  return Buffer.concat([head, payload]);
}

/** Resident set size of this process in bytes (all threads: codec workers decode here too). */
export function rss(): number {
  return process.memoryUsage().rss;
}

/**
 * Run `fn` while sampling RSS every 20 ms; resolves to its outcome, the
 * largest growth over the starting RSS, and the elapsed milliseconds.
 */
export async function measured<T>(fn: () => Promise<T>): Promise<{ result?: T; error?: unknown; growth: number; ms: number }> {
  const start = rss();
  let peak = start;
  const timer = setInterval(() => { peak = Math.max(peak, rss()); }, 20);
  const t0 = Date.now();
  try {
    const result = await fn();
    return { result, growth: Math.max(peak, rss()) - start, ms: Date.now() - t0 };
  } catch (error) {
    return { error, growth: Math.max(peak, rss()) - start, ms: Date.now() - t0 };
  } finally {
    clearInterval(timer);
  }
}
