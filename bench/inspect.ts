/**
 * Reading inside an image versus reading the same files on the host:
 * `vmdn ls IMAGE / -R --hash` (qcow2 -> GPT -> ext4 -> every file's SHA-256)
 * against `find TREE -type f -print0 | xargs -0 sha256sum` over the tree the
 * image was built from. Both under GNU time (wall seconds, peak RSS), each
 * after dropping the page cache when permitted, so both read cold.
 */
import path from 'node:path';
import { dirSize, dropCaches, timed, mb, type Timed } from './measure.js';

export interface InspectBenchSide {
  cmd: string;
  ok: boolean;
  seconds: number;
  maxRssBytes: number;
  MBps: number;
  cachesDropped: boolean;
}

export interface InspectBenchResult {
  image: string;
  files: number;
  fileBytes: number;
  vmdn: InspectBenchSide;
  host: InspectBenchSide;
  /** vmdn throughput / host tool throughput (target >= 0.5). */
  ratio: number;
  markdown: string;
}

function side(t: Timed, bytes: number, cachesDropped: boolean): InspectBenchSide {
  return { cmd: t.cmd, ok: t.exitCode === 0 && !t.timedOut, seconds: t.seconds, maxRssBytes: t.maxRssBytes, MBps: mb(bytes) / t.seconds, cachesDropped };
}

export async function benchInspect(opts: { corpusDir: string; repoRoot: string; tmpDir: string; image?: string; timeoutMs?: number }): Promise<InspectBenchResult> {
  const name = opts.image ?? 'academic';
  const image = path.join(opts.corpusDir, `${name}.qcow2`);
  const tree = path.join(opts.corpusDir, `${name}.tree`);
  const size = await dirSize(tree);
  const timeoutMs = opts.timeoutMs ?? 20 * 60_000;
  const cli = path.join(opts.repoRoot, 'bin', 'vmdn.js');
  const d1 = dropCaches();
  const v = await timed(process.execPath, [cli, 'ls', image, '/', '-R', '--hash', '--json', '--store', path.join(opts.tmpDir, 'no-store')], { tmpDir: opts.tmpDir, timeoutMs });
  const d2 = dropCaches();
  // -print0 / -0 so odd names cannot split; sha256sum output is discarded like vmdn's JSON is not kept.
  const h = await timed('sh', ['-c', 'find "$1" -type f -print0 | xargs -0 sha256sum > /dev/null', 'sh', tree], { tmpDir: opts.tmpDir, timeoutMs });
  const vmdn = side(v, size.fileBytes, d1), host = side(h, size.fileBytes, d2);
  const ratio = vmdn.MBps / host.MBps;
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
  const markdown = [
    `## Reading inside an image: \`vmdn ls -R --hash\` vs \`sha256sum\` on the host (${name})`,
    '',
    `${size.files} files, ${gib(size.fileBytes)} of content. vmdn reads ${name}.qcow2 (qcow2 -> GPT -> ext4, nothing mounted); the host tool reads ${name}.tree, the directory the image was built from. ${d1 && d2 ? 'Page cache dropped before each run.' : 'Page cache NOT dropped (not root): results depend on what was cached.'}`,
    '',
    '| tool | ok | wall s | MB/s | peak RSS MiB |',
    '|---|---|---:|---:|---:|',
    `| \`vmdn ls ${name}.qcow2 / -R --hash --json\` | ${vmdn.ok ? 'yes' : 'NO'} | ${vmdn.seconds.toFixed(1)} | ${vmdn.MBps.toFixed(0)} | ${(vmdn.maxRssBytes / 2 ** 20).toFixed(0)} |`,
    `| \`find ${name}.tree -type f -print0 \\| xargs -0 sha256sum\` | ${host.ok ? 'yes' : 'NO'} | ${host.seconds.toFixed(1)} | ${host.MBps.toFixed(0)} | ${(host.maxRssBytes / 2 ** 20).toFixed(0)} |`,
    '',
    `Throughput ratio vmdn / host: **${ratio.toFixed(2)}** (target >= 0.5).`,
    '',
  ].join('\n');
  return { image: name, files: size.files, fileBytes: size.fileBytes, vmdn, host, ratio, markdown };
}
