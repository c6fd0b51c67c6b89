/**
 * A full disk through the real CLI: a 40 MiB tmpfs as store, cache and output
 * directory, and images bigger than it. Every command must end (no hang after
 * the error), exit 6 (E_IO: free space, the store is not damaged) and leave no
 * temp files behind; temp files of killed runs beside an output are removed
 * by the next run writing that output. Needs root (mount); skipped otherwise.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { LocalStore } from '../../src/store/local/local-store.js';
import { Origin } from '../../src/net/server/origin.js';
import { vmdnOk } from '../helpers/cli.js';
import { prng, writeRaw } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { runCli } from './run-async.js';

const MiB = 1 << 20;
const root = process.getuid?.() === 0;

/** Temp files anywhere under `dir`: writers' `OUT.tmp-PID-*` and anything in a store's tmp/. */
function tempFiles(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((p) => /\.tmp-\d+-/.test(p) || (p.split(path.sep).at(-2) === 'tmp' && fs.statSync(path.join(dir, p)).isFile()));
}

describe('a full disk', { skip: !root && 'needs root to mount a tmpfs' }, () => {
  const t = tmpDir('vmdn-full-');
  const at = (...p: string[]) => path.join(t.dir, ...p);
  const small = at('small');
  const store = at('store');
  let big: string;
  let mounted = false;
  let origin: Origin;
  let originStore: LocalStore;
  let url: string;

  before(async () => {
    fs.mkdirSync(small);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', small], { encoding: 'utf8' });
    assert.equal(m.status, 0, m.stderr);
    mounted = true;
    // 64 MiB of incompressible data: neither its objects nor the image fit in 40 MiB
    big = at('big.raw');
    writeRaw(big, 64 * MiB, Array.from({ length: 16 }, (_, i) => ({ offset: i * 4 * MiB, data: prng(100 + i, 4 * MiB) })));
    vmdnOk(store, ['import', big, '--name', 'big']);
    originStore = await LocalStore.open(store);
    origin = new Origin(originStore, {});
    url = await origin.listen('127.0.0.1', 0);
  });
  after(async () => {
    await origin?.close();
    await originStore?.close();
    if (mounted) spawnSync('umount', [small]);
    t.cleanup();
  });

  const clear = () => {
    for (const n of fs.readdirSync(small)) fs.rmSync(path.join(small, n), { recursive: true, force: true });
  };

  it('import, pull and export exit 6 within bounds and leave no temp files', async () => {
    const runs: Array<[string, string[]]> = [
      ['import into a store on it', ['import', big, '--name', 'big', '--store', path.join(small, 'store'), '--json']],
      ['pull, cache and output on it', ['pull', url, 'big', path.join(small, 'out.raw'), '--cache', path.join(small, 'cache'), '--json']],
      ['pull, output on it', ['pull', url, 'big', path.join(small, 'out.raw'), '--cache', at('cache'), '--json']],
      ['export to it', ['export', 'big', path.join(small, 'out.qcow2'), '--store', store, '--json']],
    ];
    for (const [what, args] of runs) {
      clear();
      const r = await runCli(args, { timeoutMs: 90_000 });
      assert.equal(r.timedOut, false, `${what}: did not exit (${r.stdout}${r.stderr})`);
      assert.equal(r.json?.error?.code, 'E_IO', `${what}: ${r.stdout}${r.stderr}`);
      assert.equal(r.status, 6, what);
      assert.deepEqual(tempFiles(small), [], `${what}: temp files left`);
      assert.ok(!fs.existsSync(path.join(small, 'out.raw')) && !fs.existsSync(path.join(small, 'out.qcow2')), `${what}: partial output`);
    }
  });

  it('the next export or pull to an output removes temp files a killed run left beside it', async () => {
    // a pid that no longer runs: a child that has exited
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const exported = at('out', 'small.raw');
    fs.mkdirSync(at('out'));
    const stale = (out: string) => {
      const names = [`${out}.tmp-${dead}-0a1b2c3d4e5f`, `${out}.tmp-${process.pid}-0a1b2c3d4e5f`];
      for (const n of names) fs.writeFileSync(n, Buffer.alloc(MiB, 1));
      return names;
    };
    const src = at('small-src.raw');
    writeRaw(src, 8 * MiB, [{ offset: MiB, data: prng(7, 2 * MiB) }]);
    vmdnOk(store, ['import', src, '--name', 'small']);

    const [deadTmp, liveTmp] = stale(exported);
    const e = await runCli(['export', 'small', exported, '--store', store, '--json']);
    assert.equal(e.status, 0, e.stdout + e.stderr);
    assert.equal(fs.existsSync(deadTmp!), false, 'the dead run\'s temp file is still there');
    assert.equal(fs.existsSync(liveTmp!), true, 'a running process\'s temp file was removed');

    const pulled = at('out', 'pulled.raw');
    const [deadTmp2] = stale(pulled);
    const p = await runCli(['pull', url, 'small', pulled, '--cache', at('cache2'), '--json']);
    assert.equal(p.status, 0, p.stdout + p.stderr);
    assert.equal(fs.existsSync(deadTmp2!), false);
    assert.ok(fs.readFileSync(pulled).equals(fs.readFileSync(src)));
  });
});
