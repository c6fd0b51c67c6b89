/**
 * Chunker throughput: `node dist/bench/chunker-speed.js [MiB] [spec...]`.
 * Feeds pseudo-random data through chunkStream in 4 MiB blocks (the block
 * size Disk readers use) and prints MB/s per chunker. Not a test: timing on
 * shared machines is too noisy to assert on, so nothing here fails.
 */
import { chunkStream, createChunker, formatChunkerSpec, parseChunkerSpec } from '../src/strategy/chunker.js';

const BLOCK = 4 << 20;

/** xorshift32 fill: fast enough not to matter, random enough that CDC behaves as on real data. */
function randomData(bytes: number, seed = 0x9e3779b9): Uint8Array {
  const words = new Uint32Array(bytes >>> 2);
  let s = seed | 0;
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    words[i] = s;
  }
  return new Uint8Array(words.buffer);
}

async function* blocks(data: Uint8Array): AsyncIterable<Uint8Array> {
  for (let off = 0; off < data.length; off += BLOCK) yield data.subarray(off, off + BLOCK);
}

async function measure(spec: string, data: Uint8Array): Promise<{ mbps: number; count: number }> {
  const chunker = createChunker(parseChunkerSpec(spec));
  const t0 = performance.now();
  let count = 0;
  let total = 0;
  for await (const c of chunkStream(blocks(data), chunker)) {
    count++;
    total += c.length;
  }
  const secs = (performance.now() - t0) / 1000;
  if (total !== data.length) throw new Error(`${spec}: chunked ${total} of ${data.length} bytes`);
  return { mbps: data.length / 1e6 / secs, count };
}

async function main(): Promise<void> {
  const mib = Number(process.argv[2] ?? 256);
  const specs = process.argv.length > 3 ? process.argv.slice(3) : ['fixed', 'cdc', 'cdc:4k'];
  const data = randomData(mib << 20);
  console.log(`chunker throughput over ${mib} MiB of pseudo-random data (${BLOCK >> 20} MiB input blocks), best of 3`);
  for (const spec of specs) {
    const runs = [];
    // First run includes JIT warm-up; report the best, which is what steady state looks like.
    for (let r = 0; r < 3; r++) runs.push(await measure(spec, data));
    const best = Math.max(...runs.map((r) => r.mbps));
    const name = formatChunkerSpec(parseChunkerSpec(spec));
    const mean = Math.round(data.length / runs[0].count);
    console.log(`${name.padEnd(18)} ${best.toFixed(0).padStart(8)} MB/s  ${runs[0].count} chunks, mean ${mean} B`);
  }
}

await main();
