/**
 * The local store's write paths a pull uses: pack entries appended many at a
 * time (appendMany), queued index rows committed off the event loop only once
 * their pack bytes are durable (syncBehind), objects accepted from a batch
 * group whose records share one buffer (moved to a worker whole), and a
 * server's reads of many objects at once (encodedMany, stretch-reads.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { LocalStore } from '../../src/store/local/local-store.js';
import { PackWriter } from '../../src/store/local/pack-writer.js';
import { ENTRY_HEADER, entryHeader, packPath, scanPack, writeEntryHeader } from '../../src/store/local/pack-file.js';
import { readStretches } from '../../src/store/local/stretch-reads.js';
import { encodeObject } from '../../src/store/codec.js';
import { sha256 } from '../../src/store/digest.js';
import { VmdnError } from '../../src/errors.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';

const rowsIn = (dir: string) => {
  const db = new Database(path.join(dir, 'index.db'), { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM objects').get() as { n: number }).n;
  } finally {
    db.close();
  }
};
const objects = (n: number, seed: number, size = 20_000) =>
  Array.from({ length: n }, (_, i) => {
    const data = prng(seed + i, size + i);
    return { data, digest: sha256(data), frame: encodeObject(data) };
  });

describe('pack appends many at a time', () => {
  it('writeEntryHeader writes what entryHeader does', () => {
    const d = sha256(Buffer.from('x'));
    const b = Buffer.alloc(ENTRY_HEADER);
    writeEntryHeader(b, d, 12345);
    assert.ok(b.equals(entryHeader(d, 12345)));
  });

  it('appendMany rotates at the size bound; every entry is where it says, as append puts it', () => {
    const t = tmpDir();
    try {
      const w = new PackWriter(t.dir, 100_000);
      const objs = objects(12, 200);
      const first = w.append(objs[0]!.digest, objs[0]!.frame);
      const at = [first, ...w.appendMany(objs.slice(1).map((o) => ({ digest: o.digest, frame: o.frame })))];
      w.close();
      const ids = [...new Set(at.map((p) => p.pack))];
      assert.ok(ids.length >= 3, `${ids.length} packs`);
      assert.deepEqual(fs.readdirSync(t.dir).filter((n) => n.endsWith('.writing')), [], 'markers gone once closed');
      for (const id of ids) {
        const scan = scanPack(packPath(t.dir, id));
        assert.ok(scan.size <= 100_000 + 40_000, `pack of ${scan.size} bytes`);
        const mine = objs.map((o, i) => ({ o, at: at[i]! })).filter((x) => x.at.pack === id);
        assert.deepEqual(scan.entries, mine.map((x) => ({ digest: x.o.digest, offset: x.at.offset, length: x.o.frame.length })));
      }
    } finally {
      t.cleanup();
    }
  });
});

describe('index rows behind the pack sync', () => {
  it('queued rows are committed by the background flush only after syncBehind made their bytes durable', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 0 });
    const seen: Array<{ at: 'start' | 'durable'; rows: number }> = [];
    const behind = store.packs.syncBehind.bind(store.packs);
    store.packs.syncBehind = async () => {
      seen.push({ at: 'start', rows: rowsIn(t.dir) });
      await behind();
      seen.push({ at: 'durable', rows: rowsIn(t.dir) });
    };
    try {
      const objs = objects(5, 300);
      const r = await store.acceptEncodedMany(objs.map((o) => ({ digest: o.digest, encoded: Buffer.from(o.frame) })), { source: 'test' });
      assert.ok(r.every((x) => !(x instanceof Error)));
      assert.equal(rowsIn(t.dir), 0, 'queued, not committed');
      // the timer's flush runs in the background: wait until the rows are in
      for (let i = 0; i < 200 && rowsIn(t.dir) < 5; i++) await new Promise((res) => setTimeout(res, 20));
      await store.index.settled();
      assert.equal(rowsIn(t.dir), 5);
      assert.deepEqual(seen.slice(0, 2), [{ at: 'start', rows: 0 }, { at: 'durable', rows: 0 }], 'durable first, rows after');
      for (const o of objs) assert.ok(Buffer.from(await store.get(o.digest)).equals(o.data));
    } finally {
      await store.close();
      t.cleanup();
    }
  });

  it('a flush() while a background one runs commits everything; close waits for it and leaves no markers', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 0 });
    let release = () => {};
    const gate = new Promise<void>((res) => (release = res));
    const behind = store.packs.syncBehind.bind(store.packs);
    let started = 0;
    store.packs.syncBehind = async () => {
      started++;
      await gate; // hold the background flush until the foreground one is done
      await behind();
    };
    try {
      const objs = objects(3, 400);
      for (const o of objs) await store.acceptEncoded(o.digest, Buffer.from(o.frame), { source: 'test' });
      for (let i = 0; i < 200 && started === 0; i++) await new Promise((res) => setTimeout(res, 20));
      assert.equal(started, 1, 'a background flush is running');
      store.index.flush();
      assert.equal(rowsIn(t.dir), 3, 'the foreground flush synced and committed them');
      release();
      await store.index.settled();
      assert.equal(rowsIn(t.dir), 3, 'nothing twice');
    } finally {
      release();
      await store.close();
    }
    assert.deepEqual(fs.readdirSync(path.join(t.dir, 'packs')).filter((n) => n.endsWith('.writing')), []);
    t.cleanup();
  });
});

describe('objects accepted from one shared buffer', () => {
  it('with `whole`, the group buffer moves to the worker once; a bad record is refused alone', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 2 });
    try {
      const objs = objects(4, 500);
      objs[2]!.frame = encodeObject(prng(999, 20_002)); // damaged: other bytes under its name
      const arena = Buffer.allocUnsafeSlow(objs.reduce((n, o) => n + o.frame.length, 0));
      let at = 0;
      const items = objs.map((o) => {
        const view = arena.subarray(at, at + o.frame.length);
        view.set(o.frame);
        at += o.frame.length;
        return { digest: o.digest, encoded: view };
      });
      const r = await store.acceptEncodedMany(items, { source: 'test', whole: true });
      assert.equal(arena.buffer.byteLength, 0, 'moved, not copied');
      assert.ok(r[2] instanceof VmdnError && r[2].code === 'E_CORRUPT_OBJECT');
      for (const i of [0, 1, 3]) {
        assert.ok(!(r[i] instanceof Error) && r[i]!.added);
        assert.ok(Buffer.from(await store.get(objs[i]!.digest)).equals(objs[i]!.data));
      }
      assert.equal(await store.has(objs[2]!.digest), false);
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});

describe('objects accepted while the codec workers boot', () => {
  it('are verified on the calling thread: a bad one refused, the others kept; then the workers take over', async () => {
    const t = tmpDir();
    const store = await LocalStore.open(t.dir, { workers: 2 });
    try {
      store.codecPool();
      const objs = objects(3, 300);
      objs[1]!.frame = encodeObject(prng(777, 20_001)); // damaged: other bytes under its name
      // not moved: the workers are not up yet (a moved buffer would read as empty)
      const frames = objs.map((o) => Buffer.from(o.frame));
      const r = await store.acceptEncodedMany(objs.map((o, i) => ({ digest: o.digest, encoded: frames[i]! })), { source: 'test' });
      assert.ok(frames.every((f, i) => f.length === objs[i]!.frame.length), 'verified here, not moved');
      assert.ok(r[1] instanceof VmdnError && r[1].code === 'E_CORRUPT_OBJECT');
      for (const i of [0, 2]) assert.ok(Buffer.from(await store.get(objs[i]!.digest)).equals(objs[i]!.data));
      assert.equal(await store.has(objs[1]!.digest), false);
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});

describe('reads of many objects for a server', () => {
  it('encodedMany gives each object as stored: packed ones by stretch, loose ones, none for one not held', async () => {
    const t = tmpDir();
    try {
      const old = await LocalStore.open(t.dir, { workers: 0, loose: true });
      const loose = objects(1, 600)[0]!;
      await old.put(loose.data);
      await old.close();
      const store = await LocalStore.open(t.dir, { workers: 0 });
      try {
        const objs = objects(6, 610);
        for (const o of objs) await store.put(o.data);
        const absent = sha256(Buffer.from('absent'));
        // out of pack order too: a stretch is only what is adjacent in the request
        const ask = [objs[0]!.digest, objs[1]!.digest, loose.digest, absent, objs[5]!.digest, objs[3]!.digest, objs[4]!.digest];
        const got = await store.encodedMany(ask);
        const want = await Promise.all(ask.map((d) => (d === absent ? undefined : store.getEncoded(d))));
        assert.equal(got.length, ask.length);
        got.forEach((g, i) => assert.deepEqual(g && Buffer.from(g), want[i] && Buffer.from(want[i]!), `item ${i}`));
        // stale places (a pack gc moved away) are looked up again
        const placed = await store.statPlaced(ask);
        for (const [d, row] of placed) if ((row as { pack?: string }).pack) placed.set(d, { ...row, pack: '0000000000000000' } as typeof row);
        const again = await store.encodedMany(ask, placed);
        again.forEach((g, i) => assert.deepEqual(g && Buffer.from(g), want[i] && Buffer.from(want[i]!), `item ${i} (stale place)`));
      } finally {
        await store.close();
      }
    } finally {
      t.cleanup();
    }
  });

  it('readStretches reads a stretch at once; a truncated pack fails only the objects it cut', () => {
    const t = tmpDir();
    try {
      const w = new PackWriter(t.dir);
      const objs = objects(4, 700);
      const at = w.appendMany(objs.map((o) => ({ digest: o.digest, frame: o.frame })));
      w.close();
      const file = packPath(t.dir, at[0]!.pack);
      const frames = objs.map((o, i) => ({ digest: o.digest, path: file, offset: at[i]!.offset, length: o.frame.length }));
      const whole = readStretches(frames, 'test');
      whole.forEach((b, i) => assert.ok(Buffer.from(b as Uint8Array).equals(objs[i]!.frame)));
      assert.equal((whole[0] as Uint8Array).buffer, (whole[3] as Uint8Array).buffer, 'one read, one buffer');
      // cut the pack in the middle of the third frame
      fs.truncateSync(file, at[2]!.offset + 10);
      const cut = readStretches(frames, 'test');
      assert.ok(Buffer.from(cut[0] as Uint8Array).equals(objs[0]!.frame) && Buffer.from(cut[1] as Uint8Array).equals(objs[1]!.frame));
      for (const i of [2, 3]) assert.ok(cut[i] instanceof VmdnError && cut[i].code === 'E_CORRUPT_OBJECT', String(cut[i]));
    } finally {
      t.cleanup();
    }
  });
});
