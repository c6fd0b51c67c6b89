/**
 * `vmdn nbd` against real NBD clients (qemu-img, qemu-io): the export reads as
 * the imported image, writes land in the overlay and never in the store, a
 * read-only export refuses writes, an overlay file outlives the server.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { tmpDir } from '../helpers/tmp.js';
import { ext4Disk } from '../helpers/ext4-disk.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { CLI, qemuCompare, vmdn, vmdnOk } from '../helpers/cli.js';
import { hasQemuTools, RawConn, CMD, EPERM, request, startNbd } from './raw-client.js';

const skip = hasQemuTools() ? false : 'qemu-img/qemu-io not installed (scripts/ensure-debian-tools.mjs installs them)';

/** Every file under the store's objects/ and packs/: path -> size and mtime (a write into the store would change it). */
function objectsSnapshot(store: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const st = fs.statSync(p);
        out.set(path.relative(store, p), `${st.size}:${st.mtimeMs}`);
      }
    }
  };
  walk(path.join(store, 'objects'));
  if (fs.existsSync(path.join(store, 'packs'))) walk(path.join(store, 'packs'));
  return out;
}

function qemuIo(uri: string, cmds: string[]): { status: number; out: string } {
  const r = spawnSync('qemu-io', ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), uri], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status ?? -1, out: r.stdout + r.stderr };
}

describe('vmdn nbd with qemu', { skip }, () => {
  const t = tmpDir('vmdn-nbd-');
  const store = path.join(t.dir, 'store');
  const disk = path.join(t.dir, 'disk.raw');
  const sock = path.join(t.dir, 'nbd.sock');
  let server: Awaited<ReturnType<typeof startNbd>>;
  let uri: (name: string) => string;

  before(async () => {
    const tree = path.join(t.dir, 'tree');
    fs.mkdirSync(path.join(tree, 'etc'), { recursive: true });
    const rnd = mulberry32(7);
    fs.writeFileSync(path.join(tree, 'big.bin'), Buffer.from(Array.from({ length: 3 << 20 }, () => Math.floor(rnd() * 256))));
    fs.writeFileSync(path.join(tree, 'etc', 'hostname'), 'nbd-test\n');
    ext4Disk(tree, disk, { sizeMiB: 24 });
    vmdnOk(store, ['import', disk, '--name', 'img:1']);
    server = await startNbd(store, ['img:1', '--socket', sock]);
    uri = (name) => `nbd+unix:///${name}?socket=${sock}`;
  });
  after(async () => {
    await server?.stop();
    t.cleanup();
  });

  it('reads as the imported image, under its name and under the empty name', () => {
    assert.equal(server.info.size, fs.statSync(disk).size);
    for (const name of ['img:1', '']) {
      const c = qemuCompare(disk, uri(name));
      assert.ok(c.identical, `${name || '(empty name)'}: ${c.out}`);
    }
    const wrong = qemuCompare(disk, uri('img:2'));
    assert.ok(!wrong.identical && /not available|img:2/.test(wrong.out), wrong.out);
  });

  it('qemu-img convert from the export writes what vmdn export writes', () => {
    const exported = path.join(t.dir, 'exported.raw');
    const converted = path.join(t.dir, 'converted.raw');
    vmdnOk(store, ['export', 'img:1', exported]);
    const r = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri('img:1'), converted], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(fs.readFileSync(converted).equals(fs.readFileSync(exported)));
  });

  it('random writes read back, unwritten bytes stay the image, and the store is untouched', () => {
    const seed = seedFrom('VMDN_NBD_SEED');
    const rnd = mulberry32(seed);
    const before = objectsSnapshot(store);
    const model = fs.readFileSync(disk);
    const cmds: string[] = [];
    for (let i = 0; i < 60; i++) {
      const len = 1 + Math.floor(rnd() * (rnd() < 0.3 ? 300_000 : 9000));
      const off = Math.floor(rnd() * (model.length - len));
      if (rnd() < 0.15) {
        cmds.push(`write -z ${off} ${len}`);
        model.fill(0, off, off + len);
      } else {
        const pat = 1 + Math.floor(rnd() * 254);
        cmds.push(`write -P ${pat} ${off} ${len}`);
        model.fill(pat, off, off + len);
      }
    }
    cmds.push('flush');
    const w = qemuIo(uri('img:1'), cmds);
    assert.equal(w.status, 0, `seed ${seed}: ${w.out}`);
    assert.doesNotMatch(w.out, /error|failed/i, `seed ${seed}`);
    // the whole disk as a client now sees it: every written byte and every untouched one
    const seen = path.join(t.dir, 'seen.raw');
    const r = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(''), seen], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const got = fs.readFileSync(seen);
    const diff = got.findIndex((b, i) => b !== model[i]);
    assert.equal(diff, -1, `seed ${seed}: first difference at byte ${diff}`);
    assert.ok(!got.equals(fs.readFileSync(disk)), 'the writes changed what the client reads');
    assert.deepEqual(objectsSnapshot(store), before, 'no object in the store changed');
    const v = vmdn(store, ['verify']);
    assert.equal(v.status, 0, v.stdout + v.stderr);
    assert.equal(v.json.ok, true);
    assert.ok(fs.readFileSync(disk).equals(Buffer.from(fs.readFileSync(path.join(t.dir, 'exported.raw')))), 'vmdn export still gives the original image');
  });

  it('--readonly refuses writes (qemu cannot open it for writing, a raw WRITE gets EPERM) and still reads', async () => {
    const ro = path.join(t.dir, 'ro.sock');
    const s = await startNbd(store, ['img:1', '--socket', ro, '--readonly']);
    try {
      assert.equal(s.info.readOnly, true);
      const w = qemuIo(`nbd+unix:///?socket=${ro}`, ['write -P 9 0 4096']);
      assert.ok(w.status !== 0 || /read.only|permission|not permitted/i.test(w.out), w.out);
      assert.match(w.out, /read.only|permission|not permitted/i);
      const c = await RawConn.connect(ro);
      const { flags } = await c.go('');
      assert.ok(flags & 2, 'NBD_FLAG_READ_ONLY is set');
      c.send(request(CMD.WRITE, 0, 4096, { data: Buffer.alloc(4096, 9) }));
      assert.equal((await c.reply())!.error, EPERM);
      c.send(request(CMD.READ, 0, 4096));
      const r = (await c.reply(4096))!;
      assert.equal(r.error, 0);
      assert.ok(r.data.equals(fs.readFileSync(disk).subarray(0, 4096)));
      c.destroy();
      assert.ok(qemuCompare(disk, `nbd+unix:///?socket=${ro}`).identical);
    } finally {
      await s.stop();
    }
  });

  it('--overlay FILE keeps writes across restarts and belongs to its image only', async () => {
    const ovl = path.join(t.dir, 'keep.ovl');
    const ks = path.join(t.dir, 'keep.sock');
    let s = await startNbd(store, ['img:1', '--socket', ks, '--overlay', ovl]);
    assert.equal(qemuIo(`nbd+unix:///?socket=${ks}`, ['write -P 0x5a 12345 20000']).status, 0);
    await s.stop();
    s = await startNbd(store, ['img:1', '--socket', ks, '--overlay', ovl]);
    try {
      const want = path.join(t.dir, 'want.raw');
      const b = fs.readFileSync(disk);
      b.fill(0x5a, 12345, 12345 + 20000);
      fs.writeFileSync(want, b);
      const c = qemuCompare(want, `nbd+unix:///?socket=${ks}`);
      assert.ok(c.identical, c.out);
    } finally {
      await s.stop();
    }
    vmdnOk(store, ['import', disk, '--name', 'other:1', '--chunker', 'fixed:64k']);
    const other = vmdn(store, ['nbd', 'other:1', '--socket', ks, '--overlay', ovl]);
    assert.equal(other.status, 2, other.stdout + other.stderr);
    assert.match(other.stdout + other.stderr, /not an overlay for this image/);
  });

  it('usage errors: neither or both of --socket and --listen, --overlay with --readonly, a bad address', () => {
    for (const args of [[], ['--socket', sock, '--listen', '127.0.0.1:0'], ['--socket', path.join(t.dir, 'x.sock'), '--readonly', '--overlay', path.join(t.dir, 'x.ovl')], ['--listen', 'nowhere']]) {
      const r = vmdn(store, ['nbd', 'img:1', ...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(r.json?.error?.code, 'E_USAGE');
    }
    // bounded: a server that took the socket over would run until killed
    const busy = spawnSync(process.execPath, [CLI, 'nbd', 'img:1', '--socket', sock, '--store', store, '--json'], { encoding: 'utf8', timeout: 15_000 });
    assert.equal(busy.status, 2, `a socket a live server listens on is not taken over: ${busy.stdout}${busy.stderr}`);
    assert.match(busy.stdout, /already listening/);
    // (its overlay holds the random writes by now: ask for its size, not its bytes)
    assert.equal(spawnSync('qemu-img', ['info', uri('')]).status, 0, 'the first server still serves');
  });
});
