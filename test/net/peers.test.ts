/** Rendezvous assignment of objects to peers (src/net/client/peers.ts): stable, balanced, minimal movement. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { sha256 } from '../../src/store/digest.js';
import { owner, peerSeed, Peers, readPeerFile } from '../../src/net/client/peers.js';
import { tmpDir } from '../helpers/tmp.js';

const digests = Array.from({ length: 20_000 }, (_, i) => sha256(Buffer.from(`object ${i}`)));
const urls = (n: number) => Array.from({ length: n }, (_, i) => `http://site${i}.example:8080`);

describe('peer rendezvous', () => {
  it('is stable: the same digest and peer list give the same owner, in any list order, on any site', () => {
    const u = urls(5);
    const seeds = u.map(peerSeed);
    const reversed = [...seeds].reverse();
    for (const d of digests.slice(0, 2000)) {
      const i = owner(seeds, d);
      assert.equal(reversed[owner(reversed, d)], seeds[i]);
      assert.equal(owner(u.map(peerSeed), d), i);
    }
    // a trailing slash is the same peer
    assert.equal(peerSeed('http://a.example/'), peerSeed('http://a.example'));
  });

  it('is balanced: 16 peers each own within 15 % of an even share of 20,000 objects', () => {
    const seeds = urls(16).map(peerSeed);
    const counts = new Array<number>(16).fill(0);
    for (const d of digests) counts[owner(seeds, d)]!++;
    const even = digests.length / 16;
    for (const c of counts) assert.ok(Math.abs(c - even) <= 0.15 * even, `counts ${counts.join(' ')}`);
  });

  it('removing a peer moves only the objects it owned; adding one takes about 1/(N+1) from the others', () => {
    const seeds = urls(8).map(peerSeed);
    const fewer = seeds.filter((_, i) => i !== 3);
    let moved = 0;
    for (const d of digests) {
      const was = seeds[owner(seeds, d)]!;
      const now = fewer[owner(fewer, d)]!;
      if (was !== seeds[3]) assert.equal(now, was);
      else moved++;
    }
    assert.ok(moved > 0);
    const more = urls(9).map(peerSeed);
    let taken = 0;
    for (const d of digests) {
      const now = more[owner(more, d)]!;
      if (now === more[8]) taken++;
      else assert.equal(now, seeds[owner(seeds, d)]);
    }
    assert.ok(Math.abs(taken - digests.length / 9) < 0.15 * (digests.length / 9), `new peer took ${taken}`);
  });

  it('Peers.assign spreads over the listed peers once each (duplicates, trailing slashes folded)', async () => {
    const p = new Peers(['http://a.example', 'http://b.example/', 'http://a.example/']);
    try {
      assert.equal(p.size, 2);
      const a = p.assign(digests.slice(0, 1000));
      assert.equal([...a.values()].reduce((n, l) => n + l.length, 0), 1000);
      assert.equal(a.size, 2);
    } finally {
      await p.close();
    }
  });

  it('--peers FILE: one URL a line, blanks and # comments skipped; a missing file is a usage error', () => {
    const t = tmpDir();
    try {
      const f = path.join(t.dir, 'peers');
      fs.writeFileSync(f, '# site peers\nhttp://a.example:8080\n\n  http://b.example  \n');
      assert.deepEqual(readPeerFile(f), ['http://a.example:8080', 'http://b.example']);
      assert.throws(() => readPeerFile(path.join(t.dir, 'none')), (e: any) => e.code === 'E_USAGE');
    } finally {
      t.cleanup();
    }
  });
});
