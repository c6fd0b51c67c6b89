/**
 * `npm start`: the main job end to end on the embedded default store, with no
 * root and no network. Builds two related ext4 disk images from generated
 * trees (mke2fs -d), imports both with the real CLI, exports one, checks it is
 * bit-identical, and shows what dedup saved.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { table } from '../src/cli/output.js';
import { humanBytes } from '../src/util/size.js';
import { resolveStoreDir } from '../src/store/location.js';
import { servePortalUntilCtrlC } from './demo-portal.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(root, 'bin', 'vmdn.js');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vmdn-demo-'));

/** Deterministic pseudo-random bytes (xorshift32), so every run builds the same images. */
function prng(seed: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

function writeTree(dir: string, revision: number): void {
  const put = (rel: string, data: Buffer | string) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), data);
  };
  put('etc/os-release', 'PRETTY_NAME="vmdn demo"\nID=demo\n');
  put('etc/hostname', `demo-${revision}\n`);
  // a small dpkg database: the portal lists packages, finds images by them and diffs them between revisions
  const pkgs = [['base-files', '12.4'], ['libc6', revision === 1 ? '2.36-9' : '2.36-9+deb12u4'], ['demo-app', `1.${revision}.0-1`], ...(revision === 2 ? [['demo-results', '0.1-1']] : [])];
  put('var/lib/dpkg/status', pkgs.map(([n, v]) => `Package: ${n}\nStatus: install ok installed\nArchitecture: amd64\nVersion: ${v}\nDescription: ${n}\n`).join('\n'));
  for (let i = 0; i < 24; i++) put(`usr/lib/demo/lib${i}.so`, prng(1000 + i, 512 * 1024)); // shared "OS" files
  for (let i = 0; i < 200; i++) put(`usr/share/doc/pkg${i}/README`, `package ${i}\n`.repeat(40 + i));
  put('home/user/data/measurements.bin', prng(revision === 1 ? 7 : 8, 6 * 1024 * 1024)); // changed between revisions
  if (revision === 2) for (let i = 0; i < 8; i++) put(`home/user/results/run-${i}.bin`, prng(5000 + i, 256 * 1024));
}

function vmdn(args: string[]): any {
  const out = execFileSync(process.execPath, [cli, ...args, '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out);
}

function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.alloc(4 << 20);
  for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  fs.closeSync(fd);
  return h.digest('hex');
}

async function main(): Promise<void> {
  console.log(`vmdn demo — store: ${resolveStoreDir()} (set VMDN_STORE or --store to change)\n`);
  const images: Array<{ name: string; file: string }> = [];
  for (const rev of [1, 2]) {
    const tree = path.join(work, `tree${rev}`);
    writeTree(tree, rev);
    const file = path.join(work, `demo-v${rev}.raw`);
    // fixed UUID and hash seed: the same tree gives the same image bytes
    const uuid = `5c1de7a6-0000-4000-8000-00000000000${rev}`;
    execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-U', uuid, '-E', `hash_seed=${uuid},root_owner=0:0`, '-d', tree, file, '96M'], {
      env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' },
    });
    images.push({ name: `vmdn-demo/app:v${rev}`, file });
    console.log(`built ${path.basename(file)}: ext4, 96 MiB virtual`);
  }
  const rows: Array<Array<string>> = [];
  for (const img of images) {
    const r = vmdn(['import', img.file, '--name', img.name]);
    console.log(`imported ${img.name} in ${r.seconds.toFixed(2)} s`);
    rows.push([img.name, humanBytes(r.stats.dataBytes), String(r.stats.chunks), String(r.stats.newObjects), humanBytes(r.stats.newStoredBytes)]);
  }
  const out = path.join(work, 'exported.raw');
  const ex = vmdn(['export', images[1]!.name, out]);
  const same = sha256File(out) === sha256File(images[1]!.file) && fs.statSync(out).size === fs.statSync(images[1]!.file).size;
  console.log(`exported ${images[1]!.name} in ${ex.seconds.toFixed(2)} s: ${same ? 'bit-identical to the original' : 'DIFFERENT from the original'}\n`);
  console.log(table(['IMAGE', 'DATA', 'CHUNKS', 'NEW OBJECTS', 'NEW STORED'], rows));
  const st = vmdn(['stats']);
  console.log(`\nboth images: ${humanBytes(st.logicalBytes)} of data stored as ${humanBytes(st.storedBytes)} (${st.totalRatio.toFixed(2)}x smaller)`);
  console.log(`\n(vmdn on your PATH: \`npx vmdn ...\` in this checkout, or \`npm install -g .\` once)`);
  console.log(`next: vmdn images | vmdn export ${images[0]!.name} out.qcow2 | vmdn rm vmdn-demo/app:v1 vmdn-demo/app:v2 && vmdn gc`);
  fs.rmSync(work, { recursive: true, force: true });
  if (!same) process.exit(1);
  await servePortalUntilCtrlC(cli, images.map((i) => i.name));
}

await main();
