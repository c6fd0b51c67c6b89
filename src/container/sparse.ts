/**
 * SEEK_DATA / SEEK_HOLE through the small native addon built by `npm install`
 * (native/seek.c). Without it (addon failed to build), a file is treated as
 * fully allocated; correctness is unchanged, only hole skipping is lost.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

interface SeekAddon {
  seekData(fd: number, offset: number): number;
  seekHole(fd: number, offset: number): number;
}

let addon: SeekAddon | null | undefined;

function load(): SeekAddon | null {
  if (addon !== undefined) return addon;
  const here = path.dirname(fileURLToPath(import.meta.url));
  const require = createRequire(import.meta.url);
  for (const rel of ['../../build/Release/vmdn_seek.node', '../../../build/Release/vmdn_seek.node']) {
    try {
      addon = require(path.join(here, rel)) as SeekAddon;
      return addon;
    } catch {
      /* try next */
    }
  }
  addon = null;
  return addon;
}

/** Data ranges [start, end) of an open file of `size` bytes, in order. */
export function* dataRanges(fd: number, size: number): Generator<[number, number]> {
  const a = load();
  if (!a) {
    if (size > 0) yield [0, size];
    return;
  }
  let pos = 0;
  while (pos < size) {
    const data = a.seekData(fd, pos);
    if (data < 0 || data >= size) return;
    let hole = a.seekHole(fd, data);
    if (hole < 0 || hole > size) hole = size;
    yield [data, hole];
    pos = hole;
  }
}
