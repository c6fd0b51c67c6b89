/**
 * Compressed inputs: an image inside .gz, .xz, .zst or .bz2 (told by magic,
 * never by extension) is decompressed as a stream into a private temp file,
 * which is then probed and opened like any image. Zero blocks are skipped
 * (the temp file is sparse), output is bounded (a decompression bomb stops at
 * the bound), and a corrupt stream is E_FORMAT with the temp file removed.
 * gzip runs in node:zlib; xz, zstd and bzip2 through their Debian CLIs, with
 * their memory bounded where the tool allows it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createReadStream } from 'node:fs';
import { VmdnError } from '../errors.js';
import { openImageFile } from './image-file.js';

export type Compression = 'gzip' | 'xz' | 'zstd' | 'bzip2';

/** Default bound on decompressed bytes: larger than any disk vmdn stores (manifests stop at 2^50). */
export const MAX_DECOMPRESSED = 16 * 2 ** 40;
const BLOCK = 64 * 1024;

/** The compression wrapped around `head` (a file's first bytes), if any. */
export function compressionOf(head: Uint8Array): Compression | undefined {
  const b = (i: number) => head[i];
  if (head.length >= 6 && b(0) === 0xfd && b(1) === 0x37 && b(2) === 0x7a && b(3) === 0x58 && b(4) === 0x5a && b(5) === 0) return 'xz';
  if (head.length >= 3 && b(0) === 0x1f && b(1) === 0x8b && b(2) === 8) return 'gzip';
  if (head.length >= 4 && b(0) === 0x28 && b(1) === 0xb5 && b(2) === 0x2f && b(3) === 0xfd) return 'zstd';
  // 'BZh' + block size digit 1-9, then the block magic (pi) or the end-of-stream magic (sqrt pi)
  if (head.length >= 10 && b(0) === 0x42 && b(1) === 0x5a && b(2) === 0x68 && b(3)! >= 0x31 && b(3)! <= 0x39
    && ((b(4) === 0x31 && b(5) === 0x41 && b(6) === 0x59) || (b(4) === 0x17 && b(5) === 0x72 && b(6) === 0x45))) return 'bzip2';
  return undefined;
}

export async function probeCompression(file: string): Promise<Compression | undefined> {
  const { fh, size } = await openImageFile(file);
  try {
    const head = Buffer.alloc(Math.min(16, size));
    await fh.read(head, 0, head.length, 0);
    return compressionOf(head);
  } finally {
    await fh.close();
  }
}

const TOOLS: Record<Exclude<Compression, 'gzip'>, { cmd: string; args: string[] }> = {
  // -M: xz refuses streams that need more than this much memory to decode; -T1: one core
  xz: { cmd: 'xz', args: ['-d', '-c', '-q', '-T1', '-M', '1GiB'] },
  // --memory: a window larger than 1 GiB (a hostile frame header) is refused
  zstd: { cmd: 'zstd', args: ['-d', '-c', '-q', '--memory=1024MB'] },
  // -s: bzip2's small-memory mode (at most ~2.5 MB)
  bzip2: { cmd: 'bzip2', args: ['-d', '-c', '-q', '-s'] },
};

interface Decoder {
  out: Readable;
  /** Resolves when the decoder has ended well; rejects with the decoder's own complaint. */
  done: Promise<void>;
  kill(): void;
}

function decoder(kind: Compression, file: string): Decoder {
  if (kind === 'gzip') {
    const gunzip = zlib.createGunzip();
    // the pipeline settles once gunzip has ended (its output read by the caller) or failed
    const done = pipeline(createReadStream(file), gunzip);
    done.catch(() => {});
    return { out: gunzip, done, kill: () => gunzip.destroy() };
  }
  const t = TOOLS[kind];
  const child = spawn(t.cmd, [...t.args, '--', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString('utf8');
  });
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (err) => reject(new VmdnError('E_UNSUPPORTED', `${t.cmd} is needed to read ${kind} input: ${err.message}`, { tool: t.cmd }, { cause: err })));
    child.on('close', (code, sig) => (code === 0 ? resolve() : reject(new Error(stderr.trim() || `${t.cmd} exited ${code ?? sig}`))));
  });
  return { out: child.stdout, done, kill: () => child.kill('SIGKILL') };
}

function allZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += 8) if (b.readBigUInt64LE(i) !== 0n) return false;
  return true;
}

export interface Decompressed {
  path: string;
  compression: Compression;
  bytes: number;
  remove(): Promise<void>;
}

/**
 * Decompress `file` (wrapped in `kind`) into a new temp file in `tmpDir`.
 * The temp name carries our pid second-to-last, so a store's gc removes it
 * if this process dies before its own cleanup.
 */
export async function decompressToTemp(file: string, kind: Compression, tmpDir: string, opts: { maxBytes?: number; signal?: AbortSignal } = {}): Promise<Decompressed> {
  const max = opts.maxBytes ?? MAX_DECOMPRESSED;
  await fs.mkdir(tmpDir, { recursive: true });
  const tmp = path.join(tmpDir, `decompressed-${randomBytes(6).toString('hex')}.${process.pid}.tmp`);
  const remove = () => fs.rm(tmp, { force: true });
  const fh = await fs.open(tmp, 'wx', 0o600);
  const d = decoder(kind, file);
  let pos = 0;
  let pending: Buffer = Buffer.alloc(0);
  const flush = async (buf: Buffer) => {
    // whole zero blocks become holes: the final truncate gives the file its length
    for (let at = 0; at < buf.length; at += BLOCK) {
      const part = buf.subarray(at, Math.min(buf.length, at + BLOCK));
      if (!(part.length % 8 === 0 && allZero(part))) await fh.write(part, 0, part.length, pos);
      pos += part.length;
    }
  };
  try {
    for await (const chunk of d.out as AsyncIterable<Buffer>) {
      opts.signal?.throwIfAborted();
      if (pos + pending.length + chunk.length > max) {
        throw new VmdnError('E_FORMAT', `${file}: decompresses to more than ${max} bytes (the bound; a decompression bomb or --max-size too small)`, { path: file, compression: kind, maxBytes: max });
      }
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      const whole = pending.length - (pending.length % BLOCK);
      if (whole > 0) {
        await flush(pending.subarray(0, whole));
        pending = pending.subarray(whole);
      }
    }
    await d.done;
    await flush(pending);
    await fh.truncate(pos);
    await fh.close();
    if (pos === 0) throw new VmdnError('E_FORMAT', `${file}: ${kind} stream holds no data`, { path: file, compression: kind });
    return { path: tmp, compression: kind, bytes: pos, remove };
  } catch (err) {
    d.kill();
    await d.done.catch(() => {});
    await fh.close().catch(() => {});
    await remove();
    if (err instanceof VmdnError) throw err;
    if ((err as Error)?.name === 'AbortError') throw err;
    const errno = (err as NodeJS.ErrnoException)?.code;
    if (typeof errno === 'string' && /^E[A-Z]+$/.test(errno)) throw err; // the file system's (ENOSPC, EACCES): passed on as such
    throw new VmdnError('E_FORMAT', `${file}: corrupt ${kind} stream: ${(err as Error)?.message ?? err}`, { path: file, compression: kind }, { cause: err });
  }
}
