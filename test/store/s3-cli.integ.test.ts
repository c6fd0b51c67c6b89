/**
 * `vmdn --store s3://...` end to end against a real Ceph RGW
 * (test/helpers/rgw.ts), all real `vmdn` processes: import, images, export,
 * verify and gc on the bucket; origins serving it (two on one bucket share
 * its names); a push that survives the S3 server restarting; the corpus's
 * base image round trip, identical.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { vmdn, vmdnOk, vmdnStart, qemuCompare } from '../helpers/cli.js';
import { prng, sampleDisk, writeRaw } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';
import { startServe } from '../helpers/serve.js';
import { startRgw, type Rgw } from '../helpers/rgw.js';
import { corpusDir } from '../helpers/corpus.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { ext4Disk } from '../helpers/ext4-disk.js';
import { startNbd } from '../helpers/nbd-run.js';

const MiB = 1024 * 1024;
const TOKEN = 'test-token-s3-0123456789';

describe('vmdn --store s3:// on Ceph RGW', { timeout: 900_000 }, () => {
  let rgw: Rgw;
  let t: ReturnType<typeof tmpDir>;
  const f = (n: string) => path.join(t.dir, n);
  const identical = (a: string, b: string) => {
    const c = qemuCompare(a, b);
    assert.ok(c.identical, c.out);
  };

  before(async () => {
    rgw = await startRgw();
    t = tmpDir('vmdn-s3cli-');
    sampleDisk(f('one.raw'), 11);
    sampleDisk(f('two.raw'), 21);
    // enough distinct data for several packs and a push that takes a while
    writeRaw(f('big.raw'), 64 * MiB, [{ offset: 0, data: prng(31, 40 * MiB) }]);
  }, { timeout: 200_000 });
  after(async () => {
    await rgw?.stop();
    t?.cleanup();
  });

  it('import, images, export and verify on a bucket: the image comes back identical', () => {
    const s3 = rgw.storeUrl('imgs');
    const imp = vmdnOk(s3, ['import', f('one.raw'), '--name', 'one:1']);
    assert.ok(imp.stats.newObjects > 0);
    const imgs = vmdnOk(s3, ['images']).images;
    assert.deepEqual(imgs.map((i: { ref: string }) => i.ref), ['one:1']);
    assert.ok(imgs[0].storedBytes > 0 && imgs[0].uniqueBytes === imgs[0].storedBytes);
    vmdnOk(s3, ['export', 'one:1', f('one-out.raw')]);
    identical(f('one.raw'), f('one-out.raw'));
    const v = vmdn(s3, ['verify']);
    assert.equal(v.status, 0, v.stdout + v.stderr);
    assert.equal(v.json.ok, true);
    assert.ok(v.json.objectsChecked >= imp.stats.newObjects);
    // a bucket that is not there is an error for commands that only read
    assert.equal(vmdn(rgw.storeUrl(), ['images']).status, 4);
  });

  it('gc: young packs wait out the grace period; then a removed image\'s packs go, and the kept image stays whole', () => {
    const s3 = rgw.storeUrl();
    vmdnOk(s3, ['import', f('one.raw'), '--name', 'one:1']);
    vmdnOk(s3, ['import', f('two.raw'), '--name', 'two:1']);
    vmdnOk(s3, ['rm', 'one:1']);
    const young = vmdnOk(s3, ['gc', '--grace', '1h']);
    assert.equal(young.condemnedPacks, 0);
    assert.equal(young.deletedPacks, 0);
    const g = vmdnOk(s3, ['gc', '--grace', '0']);
    assert.ok(g.deletedPacks >= 1 && g.freedBytes > 0, JSON.stringify(g));
    assert.equal(vmdn(s3, ['export', 'one:1', f('gone.raw')]).status, 4);
    vmdnOk(s3, ['export', 'two:1', f('two-out.raw')]);
    identical(f('two.raw'), f('two-out.raw'));
    assert.equal(vmdn(s3, ['verify']).json.ok, true);
    // nothing left to do: a second run frees nothing
    assert.equal(vmdnOk(s3, ['gc', '--grace', '0']).deletedPacks, 0);
  });

  it('origins on one bucket: a push into one is served by the other, pulled identical', async () => {
    const s3 = rgw.storeUrl('shared');
    vmdnOk(s3, ['import', f('two.raw'), '--name', 'seed:1']); // creates the bucket
    const a = await startServe(s3, { env: { ...process.env, VMDN_TOKEN: TOKEN } });
    const b = await startServe(s3);
    try {
      const p = vmdnOk(f('local'), ['push', f('one.raw'), a.url, '--name', 'one:1', '--token-file', writeToken()]);
      assert.ok(p.objectsSent > 0);
      vmdnOk(f('cache-b'), ['pull', b.url, 'one:1', f('pulled-b.raw')]);
      identical(f('one.raw'), f('pulled-b.raw'));
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  // Twice in CI the re-push after the restart met "ECONNREFUSED" although radosgw was back: the origin's pack
  // writer kept the failure of the upload that met the gateway down and threw it at every later object, for ever.
  // Now an upload retries while S3 is unreachable (pack-writer.ts), so the push itself carries on.
  it('the S3 server restarts during a push: the push carries on, the image arrives whole, no object is sent twice', async () => {
    const s3 = rgw.storeUrl('fault');
    vmdnOk(s3, ['import', f('two.raw'), '--name', 'seed:1']);
    const a = await startServe(s3, { env: { ...process.env, VMDN_TOKEN: TOKEN } });
    const stats = async () => (await fetch(`${a.url}/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as Promise<{ objectsUploaded: number; s3: { put: number; uploadRetries: number } }>;
    try {
      vmdnOk(f('local-big'), ['import', f('big.raw'), '--name', 'big:1']);
      const push = vmdnStart(f('local-big'), ['push', 'big:1', a.url, '--name', 'big:1', '--token-file', writeToken(), '--concurrency', '2']);
      // under way: the first pack of this push is in the bucket (a PUT of the pack and one of its index)
      for (const t0 = Date.now(); (await stats()).s3.put < 2; await new Promise((r) => setTimeout(r, 20))) {
        assert.ok(Date.now() - t0 < 120_000, 'no pack uploaded within 120 s');
      }
      assert.equal(push.child.exitCode, null, 'the push is still running when the S3 server goes');
      // down longer than the SDK's own retries last, so an upload surely fails at least once
      await rgw.restartGateway(4000);
      const r = await push.done;
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const pushed = JSON.parse(r.stdout) as { objects: number; objectsSent: number };
      const s = await stats();
      assert.ok(s.s3.uploadRetries > 0, `an upload met the server down and was retried: ${JSON.stringify(s)}`);
      // each object crossed once: none sent again after the restart, and nothing left to send
      assert.equal(s.objectsUploaded, pushed.objectsSent);
      assert.equal(vmdnOk(f('local-big'), ['push', 'big:1', a.url, '--name', 'big:1', '--token-file', writeToken()]).objectsSent, 0);
      vmdnOk(f('cache-fault'), ['pull', a.url, 'big:1', f('big-out.raw')]);
      identical(f('big.raw'), f('big-out.raw'));
    } finally {
      await a.stop();
    }
    assert.equal(vmdn(s3, ['verify']).json.ok, true);
  });

  it('serve --cache on a bucket: objects served twice are read from S3 once, each verified, the cache within its budget', async () => {
    const s3 = rgw.storeUrl('hot');
    vmdnOk(s3, ['import', f('one.raw'), '--name', 'one:1']);
    vmdnOk(s3, ['import', f('two.raw'), '--name', 'two:1']);
    const cache = f('hot-cache');
    // one image fits (about 3.6 MiB of objects); the two do not
    const budget = 6 * MiB;
    type Stats = { s3: { getRange: number }; cache: { hits: number; misses: number; evictions: number; localCorrupt: number; objectsFromUpstream: number; bytes: number; maxBytes: number } };
    const serving = async (fn: (url: string, stats: () => Promise<Stats>) => Promise<void>) => {
      const a = await startServe(s3, { args: ['--cache', cache, '--max-size', '6M'] });
      try {
        await fn(a.url, async () => (await fetch(`${a.url}/stats`)).json() as Promise<Stats>);
      } finally {
        await a.stop();
      }
    };
    const pull = (url: string, ref: string, out: string) => {
      vmdnOk(f(`pc-${out}`), ['pull', url, ref, f(out)]);
      return f(out);
    };
    await serving(async (url, stats) => {
      identical(f('one.raw'), pull(url, 'one:1', 'hot1.raw'));
      const s = await stats();
      assert.ok(s.s3.getRange > 0 && s.cache.misses > 0 && s.cache.objectsFromUpstream === s.cache.misses, JSON.stringify(s));
    });
    // the same objects again, from a restarted origin on the same cache: not one read from the bucket
    await serving(async (url, stats) => {
      identical(f('one.raw'), pull(url, 'one:1', 'hot2.raw'));
      const s = await stats();
      assert.equal(s.s3.getRange, 0, JSON.stringify(s));
      assert.ok(s.cache.hits > 0 && s.cache.misses === 0, JSON.stringify(s));
    });
    // a damaged cached copy is never served: found by its hash, dropped, read from the bucket again
    const c = await LocalStore.open(cache);
    const victim = (await c.list()[Symbol.asyncIterator]().next()).value!.digest;
    fs.writeFileSync(c.objectPath(victim), Buffer.alloc(c.index.getObject(victim)!.storedSize, 7));
    await c.close();
    await serving(async (url, stats) => {
      identical(f('one.raw'), pull(url, 'one:1', 'hot3.raw'));
      const s = await stats();
      assert.equal(s.cache.localCorrupt, 1, JSON.stringify(s));
      assert.equal(s.cache.objectsFromUpstream, 1, JSON.stringify(s));
      // more than the budget goes through whole; the cache stays within it
      identical(f('two.raw'), pull(url, 'two:1', 'hot-two.raw'));
      const after = await stats();
      assert.ok(after.cache.bytes <= budget && after.cache.maxBytes === budget && after.cache.evictions > 0, JSON.stringify(after.cache));
    });
    const held = await LocalStore.open(cache);
    const onDisk = (await held.totals()).stored;
    assert.ok(onDisk <= budget, `objects on disk within the budget: ${onDisk}`);
    await held.close();
  });

  it('every command that reads a store reads a bucket: stats, inspect, ls, cat, diff and nbd; those that need a directory say so', async () => {
    const s3 = rgw.storeUrl('cmds');
    for (const [v, text] of [[1, 'hello from a bucket\n'], [2, 'changed in a bucket\n']] as const) {
      const tree = f(`tree${v}`);
      fs.mkdirSync(path.join(tree, 'etc'), { recursive: true });
      fs.writeFileSync(path.join(tree, 'etc', 'motd'), text);
      ext4Disk(tree, f(`fs${v}.raw`), { sizeMiB: 16 });
      vmdnOk(s3, ['import', f(`fs${v}.raw`), '--name', `fs:${v}`]);
    }
    const st = vmdnOk(s3, ['stats']);
    assert.ok(st.store.startsWith('s3://') && st.images === 2 && st.objects > 0 && st.storedBytes > 0, JSON.stringify(st));
    assert.ok(JSON.stringify(vmdnOk(s3, ['inspect', 'fs:1'])).includes('ext4'));
    assert.ok(JSON.stringify(vmdnOk(s3, ['ls', 'fs:1', '/etc'])).includes('motd'));
    assert.equal(vmdn(s3, ['cat', 'fs:1', '/etc/motd']).stdout, 'hello from a bucket\n');
    assert.ok(JSON.stringify(vmdnOk(s3, ['diff', 'fs:1', 'fs:2'])).includes('/etc/motd'));
    const sock = f('s3.sock');
    const n = await startNbd(s3, ['fs:1', '--socket', sock, '--readonly']);
    try {
      identical(f('fs1.raw'), `nbd+unix:///fs:1?socket=${sock}`);
    } finally {
      await n.stop();
    }
    // a local directory is what these keep (a pull's cache, scoped tokens, a push's source): a usage error that says so
    for (const args of [['push', 'fs:1', 'http://127.0.0.1:9', '--name', 'x:1', '--token-file', writeToken()], ['pull', 'http://127.0.0.1:9', 'fs:1', f('never.raw')], ['token', 'create', '--read', 'fs']]) {
      const r = vmdn(s3, args);
      assert.equal(r.status, 2, `${args[0]}: ${r.stderr}`);
      assert.match(r.stdout + r.stderr, /is an S3 store: this command needs a local store directory/);
    }
    assert.equal(vmdn(s3, ['nbd', 'fs:1', '--socket', f('x.sock'), '--record-profile']).status, 2);
  });

  it('corpus base: imported into a bucket and exported, identical', { skip: corpusDir().reason }, () => {
    const base = path.join(corpusDir().dir!, 'base.qcow2');
    const s3 = rgw.storeUrl('corpus');
    vmdnOk(s3, ['import', base, '--name', 'base:1']);
    vmdnOk(s3, ['export', 'base:1', f('base-out.raw')]);
    identical(base, f('base-out.raw'));
  });

  function writeToken(): string {
    const file = f('token');
    fs.writeFileSync(file, TOKEN);
    return file;
  }
});
