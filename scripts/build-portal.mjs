#!/usr/bin/env node
// Bundles the portal's pages (portal/src, preact + htm + uPlot) into dist/portal/ at build time:
// assets/portal-HASH.js and .css (hashed: served as immutable) and an index.html naming them.
// Nothing is loaded from other sites at run time. Run by `npm run build` after tsc.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'portal');
fs.rmSync(out, { recursive: true, force: true });
const r = await build({
  absWorkingDir: root,
  entryPoints: { portal: 'portal/src/main.js' },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  outdir: path.join(out, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  metafile: true,
  logLevel: 'warning',
  legalComments: 'none',
});
const outputs = Object.keys(r.metafile.outputs).map((f) => path.basename(f));
const js = outputs.find((f) => f.endsWith('.js'));
const css = outputs.find((f) => f.endsWith('.css'));
if (!js || !css) throw new Error(`build-portal: expected a .js and a .css output, got ${outputs.join(', ')}`);
const html = fs.readFileSync(path.join(root, 'portal', 'index.html'), 'utf8').replace('%JS%', `/assets/${js}`).replace('%CSS%', `/assets/${css}`);
fs.writeFileSync(path.join(out, 'index.html'), html);
