import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A temp dir removed when the returned disposer runs. */
export function tmpDir(prefix = 'vmdn-test-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
