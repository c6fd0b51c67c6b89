/** Side records of a local store: files STORE/KIND/KEY, written by temp file and rename. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { VmdnError } from '../../errors.js';
import { RECORD_NAME, type SideRecords } from '../types.js';

export class DirRecords implements SideRecords {
  constructor(private readonly dir: string) {}

  private file(kind: string, key: string): string {
    if (!RECORD_NAME.test(kind) || !RECORD_NAME.test(key)) throw new VmdnError('E_USAGE', `bad record name ${kind}/${key}`, { kind, key });
    return path.join(this.dir, kind, key);
  }

  async getRecord(kind: string, key: string): Promise<Uint8Array | undefined> {
    try {
      return await fs.readFile(this.file(kind, key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async putRecord(kind: string, key: string, data: Uint8Array): Promise<void> {
    const dest = this.file(kind, key);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    const tmp = `${dest}.${process.pid}.tmp`;
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, dest);
  }
}
