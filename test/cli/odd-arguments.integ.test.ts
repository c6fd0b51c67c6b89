/**
 * Arguments that are not what a command expects, through the real CLI: a FIFO
 * or a directory as the image (a clear E_USAGE, never a hang), a store that
 * does not exist for commands that only read or maintain one (E_NOT_FOUND,
 * nothing created), names with control and bidi characters (escaped for a
 * terminal, exact in --json), and an export onto an existing file.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sh, vmdnOk } from '../helpers/cli.js';
import { sampleDisk } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { Origin } from '../../src/net/server/origin.js';
import { runCli } from './run-async.js';

const RLO = '\u202e'; // RIGHT-TO-LEFT OVERRIDE: "evil\u202Etxt.exe" shows as "evilexe.txt"

describe('odd arguments', () => {
  const t = tmpDir('vmdn-odd-');
  const at = (...p: string[]) => path.join(t.dir, ...p);
  const store = at('store');
  let raw: string;
  let origin: Origin;
  let originStore: LocalStore;
  let url: string;

  before(async () => {
    raw = at('disk.raw');
    sampleDisk(raw, 3);
    vmdnOk(store, ['import', raw, '--name', 'disk']);
    fs.mkdirSync(at('a-dir'));
    sh('mkfifo', [at('fifo')]);
    originStore = await LocalStore.open(store);
    origin = new Origin(originStore, {});
    url = await origin.listen('127.0.0.1', 0);
  });
  after(async () => {
    await origin.close();
    await originStore.close();
    t.cleanup();
  });

  it('a FIFO as image or --seed is refused at once with E_USAGE', async () => {
    for (const args of [
      ['import', at('fifo'), '--name', 'f'],
      ['inspect', at('fifo')],
      ['ls', at('fifo')],
      ['diff', raw, at('fifo')],
      ['push', at('fifo'), 'http://127.0.0.1:9', '--name', 'f'],
      ['pull', url, 'disk', at('pulled.raw'), '--cache', at('cache'), '--seed', at('fifo')],
    ]) {
      const r = await runCli([...args, '--store', store, '--json'], { timeoutMs: 20_000 });
      assert.equal(r.timedOut, false, `${args[0]} blocked on the FIFO`);
      assert.equal(r.json?.error?.code, 'E_USAGE', `${args[0]}: ${r.stdout}${r.stderr}`);
      assert.match(r.json.error.message, /FIFO/);
      assert.equal(r.status, 2);
    }
  });

  it('a directory as image is E_USAGE, not an I/O error', async () => {
    for (const args of [['import', at('a-dir'), '--name', 'd'], ['inspect', at('a-dir')], ['ls', at('a-dir') + '/']]) {
      const r = await runCli([...args, '--store', store, '--json'], { timeoutMs: 20_000 });
      assert.equal(r.json?.error?.code, 'E_USAGE', `${args[0]}: ${r.stdout}${r.stderr}`);
      assert.match(r.json.error.message, /directory/);
      assert.equal(r.status, 2);
    }
  });

  it('read-only and maintenance commands do not create a missing store', async () => {
    const nowhere = at('no-such-store');
    for (const args of [['gc'], ['verify'], ['images'], ['stats'], ['rm', 'disk'], ['export', 'disk', at('x.raw')], ['push', 'disk', 'http://127.0.0.1:9', '--name', 'x'], ['nbd', 'disk', '--socket', at('n.sock')]]) {
      const r = await runCli([...args, '--store', nowhere, '--json'], { timeoutMs: 20_000 });
      assert.equal(r.json?.error?.code, 'E_NOT_FOUND', `${args[0]}: ${r.stdout}${r.stderr}`);
      assert.match(r.json.error.message, /no store at/);
      assert.equal(r.status, 4);
      assert.equal(fs.existsSync(nowhere), false, `${args[0]} created the store`);
    }
  });

  it('control and bidi characters in names are escaped for a terminal, exact in --json', async () => {
    // a file name from the command line, echoed in an error message
    const name = at(`evil${RLO}gpj.raw\x1b[2J`);
    const human = await runCli(['import', name, '--name', 'x', '--store', store]);
    assert.equal(human.status, 4);
    assert.ok(!human.stderr.includes(RLO) && !human.stderr.includes('\x1b'), JSON.stringify(human.stderr));
    assert.match(human.stderr, /evil\\xe2\\x80\\xaegpj\.raw\\x1b\[2J/);
    const json = await runCli(['import', name, '--name', 'x', '--store', store, '--json']);
    assert.ok(json.json.error.message.includes(`evil${RLO}gpj.raw\x1b[2J`));

    // a file name from inside an image, listed by ls
    const stage = at('stage');
    fs.mkdirSync(stage);
    fs.writeFileSync(path.join(stage, `invoice${RLO}fdp.exe`), 'x');
    fs.writeFileSync(path.join(stage, `iso${'\u2066'}lated`), 'x');
    const img = at('names.raw');
    sh('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', stage, img, '4M']);
    const ls = await runCli(['ls', img, '/', '--store', store]);
    assert.equal(ls.status, 0, ls.stderr);
    assert.ok(!/[\u202e\u2066]/.test(ls.stdout), JSON.stringify(ls.stdout));
    assert.match(ls.stdout, /^invoice\\xe2\\x80\\xaefdp\.exe$/m);
    assert.match(ls.stdout, /^iso\\xe2\\x81\\xa6lated$/m);
    const lsJson = await runCli(['ls', img, '/', '--store', store, '--json']);
    assert.ok(lsJson.json.entries.some((e: { path: string }) => e.path === `/invoice${RLO}fdp.exe`), lsJson.stdout);
  });

  it('export refuses to replace an existing file unless --force', async () => {
    const out = at('existing.raw');
    fs.writeFileSync(out, 'precious');
    const r = await runCli(['export', 'disk', out, '--store', store, '--json']);
    assert.equal(r.json?.error?.code, 'E_USAGE', r.stdout + r.stderr);
    assert.equal(r.status, 2);
    assert.equal(fs.readFileSync(out, 'utf8'), 'precious');
    assert.deepEqual(fs.readdirSync(t.dir).filter((n) => n.startsWith('existing.raw.tmp-')), []);
    const forced = await runCli(['export', 'disk', out, '--force', '--store', store, '--json']);
    assert.equal(forced.status, 0, forced.stdout + forced.stderr);
    assert.ok(fs.readFileSync(out).equals(fs.readFileSync(raw)));
  });
});
