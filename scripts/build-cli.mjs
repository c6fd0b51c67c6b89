#!/usr/bin/env node
// Bundles the compiled CLI (dist/src/cli/main.js) and the two worker entry
// points into dist/cli/: node then loads three files instead of ~290 modules,
// which took ~0.3 s of CPU before every command did anything. bin/vmdn.js uses
// the bundle only while it is at least as new as dist/src/cli/main.js, so a
// `tsc`-only rebuild never runs stale code. npm packages stay external (native
// addons, and the AWS SDK loaded only for S3 stores). Run by `npm run build`.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'cli');
const tmp = `${out}.tmp-${process.pid}`;
fs.rmSync(tmp, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  // the workers are found next to their pool as './NAME.js' (new URL(..., import.meta.url))
  entryPoints: {
    vmdn: 'dist/src/cli/main.js',
    'codec-worker': 'dist/src/store/local/codec-worker.js',
    'pack-worker': 'dist/src/net/server/pack-worker.js',
  },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: ['node20'],
  packages: 'external',
  outdir: tmp,
  logLevel: 'warning',
  legalComments: 'none',
});
// replace the whole directory at once: a CLI started meanwhile sees the old bundle or the new one
fs.rmSync(out, { recursive: true, force: true });
fs.renameSync(tmp, out);
