/**
 * The store lease (src/store/local/lease.ts) between real processes: writers wait
 * for gc and gc for writers, each saying so on stderr; a SIGKILLed writer or
 * gc leaves nothing locked; an origin keeps a push's objects from gc until it
 * names them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { LocalStore } from '../../src/store/local/local-store.js';
import { parseImageRef } from '../../src/store/image-name.js';
import { importImageFile } from '../../src/images/import.js';
import { resolveImage } from '../../src/images/names.js';
import { imageObjects } from '../../src/model/objects.js';
import { DEFAULT_CDC } from '../../src/strategy/chunker.js';
import { Origin } from '../../src/net/server/origin.js';
import { HttpStore } from '../../src/net/client/http-store.js';
import { objectUrlPath, refPath } from '../../src/net/wire/http-api.js';
import { vmdnOk, vmdnStart, waitFor, qemuCompare } from '../helpers/cli.js';
import { prng, sampleDisk, writeRaw } from '../helpers/images.js';
import { tmpDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;
const TOKEN = 'lease-test-token-0123';

/** Lease rows as another process sees them. */
function leases(store: string): Array<{ kind: string; pid: number }> {
  const db = new Database(path.join(store, 'index.db'), { readonly: true });
  try {
    return db.prepare('SELECT kind, pid FROM leases ORDER BY id').all() as Array<{ kind: string; pid: number }>;
  } finally {
    db.close();
  }
}

/** A promise and the function that settles it: how a test holds a lease for as long as it likes. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

describe('store lease between processes', () => {
  let t: ReturnType<typeof tmpDir>;
  const small = () => path.join(t.dir, 'small.raw');
  const big = () => path.join(t.dir, 'big.raw');

  before(() => {
    t = tmpDir('vmdn-lease-');
    sampleDisk(small(), 3);
    // incompressible and long enough to be killed mid-import
    writeRaw(big(), 128 * MiB, [{ offset: 0, data: prng(41, 64 * MiB) }]);
  });
  after(() => t.cleanup());

  it('an import waits for a running gc, saying so on stderr, then succeeds', async () => {
    const dir = path.join(t.dir, 'a');
    const store = await LocalStore.open(dir, { lease: { onWait: () => {} } });
    const g = gate();
    const gc = store.exclusive(() => g.wait);
    try {
      await waitFor(() => leases(dir).length === 1, 5000, 'the gc lease');
      const imp = vmdnStart(dir, ['import', small(), '--name', 's']);
      await waitFor(() => imp.output().stderr.includes(`waiting for gc to finish in ${dir} (pid ${process.pid})...`), 20_000, 'the waiting message');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(imp.child.exitCode, null, 'the import waits while gc runs');
      g.open();
      await gc;
      const r = await imp.done;
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(leases(dir), []);
    } finally {
      g.open();
      await store.close();
    }
  });

  it('gc waits for a running writer, saying so, then succeeds', async () => {
    const dir = path.join(t.dir, 'b');
    vmdnOk(dir, ['import', small(), '--name', 's']);
    const store = await LocalStore.open(dir, { lease: { onWait: () => {} } });
    const g = gate();
    const writing = store.writing(() => g.wait);
    try {
      await waitFor(() => leases(dir).length === 1, 5000, 'the writer lease');
      const gc = vmdnStart(dir, ['gc']);
      await waitFor(() => gc.output().stderr.includes(`waiting for 1 writer to finish in ${dir} (pid ${process.pid})...`), 20_000, 'the waiting message');
      assert.equal(gc.child.exitCode, null);
      g.open();
      await writing;
      const r = await gc.done;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(vmdnOk(dir, ['verify']).ok, true);
    } finally {
      g.open();
      await store.close();
    }
  });

  it('a SIGKILLed import or gc does not leave the store locked', async () => {
    const dir = path.join(t.dir, 'c');
    // an empty store (read-only commands no longer create one)
    await (await LocalStore.open(dir)).close();
    // an import killed while it holds the writer lease
    const imp = vmdnStart(dir, ['import', big(), '--name', 'victim']);
    await waitFor(() => leases(dir).some((l) => l.pid === imp.child.pid), 20_000, 'the import lease');
    imp.child.kill('SIGKILL');
    await imp.done;
    const gc1 = vmdnStart(dir, ['gc']);
    const r1 = await gc1.done;
    assert.equal(r1.code, 0, r1.stderr);
    assert.ok(!r1.stderr.includes('waiting'), r1.stderr);
    // a gc killed while it waits in line (behind a writer of this process)
    const store = await LocalStore.open(dir, { lease: { onWait: () => {} } });
    const g = gate();
    const writing = store.writing(() => g.wait);
    try {
      const gc2 = vmdnStart(dir, ['gc']);
      await waitFor(() => gc2.output().stderr.includes('waiting for 1 writer'), 20_000, 'gc waiting');
      gc2.child.kill('SIGKILL');
      await gc2.done;
      assert.equal(leases(dir).filter((l) => l.kind === 'gc').length, 1, 'the dead gc left its row');
      g.open();
      await writing;
      const r = await vmdnStart(dir, ['import', small(), '--name', 'after']).done;
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!r.stderr.includes('waiting'), r.stderr);
      assert.deepEqual(leases(dir), []);
    } finally {
      g.open();
      await store.close();
    }
    assert.equal(vmdnOk(dir, ['verify']).ok, true);
  });

  it('an origin keeps a push\'s uploaded objects from gc until the push names them', async () => {
    const pub = await LocalStore.open(path.join(t.dir, 'pub'));
    const originDir = path.join(t.dir, 'origin');
    const origin = new Origin(await LocalStore.open(originDir, { lease: { onWait: () => {} } }), { token: TOKEN, uploadLeaseMs: 8000 });
    await origin.listen();
    const remote = new HttpStore(origin.url, { token: TOKEN });
    try {
      await importImageFile(pub, small(), parseImageRef('s'), { chunker: DEFAULT_CDC });
      const { digest, manifest } = await resolveImage(pub, parseImageRef('s'));
      const all = [...(await imageObjects(manifest, pub)), digest];
      // a push's steps, with a gc started between the uploads and the naming
      const body = Buffer.from(JSON.stringify({ digests: all }));
      const asked = await remote.request('POST', '/v1/objects/missing', { body, auth: true, headers: { 'content-type': 'application/json' } });
      assert.equal(JSON.parse(asked.body.toString()).missing.length, all.length);
      for (const d of all) await remote.request('PUT', objectUrlPath(d), { body: await pub.getEncoded(d), auth: true, headers: { 'content-type': 'application/zstd' } });
      // the lease must outlive gc's start (node and its modules load in seconds on a busy machine: with 1.5 s it expired first)
      const gc = vmdnStart(originDir, ['gc']);
      await waitFor(() => gc.output().stderr.includes('waiting for 1 writer') || gc.child.exitCode !== null, 20_000, 'gc to wait or finish');
      const named = await remote.request('PUT', refPath(parseImageRef('s')), { body: Buffer.from(JSON.stringify({ manifest: digest })), auth: true, headers: { 'content-type': 'application/json' } });
      assert.equal(named.status, 201);
      const r = await gc.done;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).removedObjects, 0);
      const out = path.join(t.dir, 'pushed.raw');
      vmdnOk(originDir, ['export', 's', out]);
      assert.ok(qemuCompare(small(), out).identical);
      fs.rmSync(out);
    } finally {
      await remote.close();
      await origin.close();
      await origin.store.close();
      await pub.close();
    }
  });
});
