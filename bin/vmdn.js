#!/usr/bin/env node
// The bundled CLI (scripts/build-cli.mjs) when it is at least as new as the
// compiled modules; else (a tsc-only rebuild, no bundle, or VMDN_NO_BUNDLE=1)
// the modules themselves. Same code either way: the bundle is made from them.
import fs from 'node:fs';

const dist = new URL('../dist/', import.meta.url);
let entry = '../dist/src/cli/main.js';
try {
  if (!process.env.VMDN_NO_BUNDLE && fs.statSync(new URL('cli/vmdn.js', dist)).mtimeMs >= fs.statSync(new URL('src/cli/main.js', dist)).mtimeMs) entry = '../dist/cli/vmdn.js';
} catch {
  // no bundle: the modules
}
await import(entry);
