/**
 * `vmdn nbd NAME --from ORIGIN --peer URL` (docs/p2p.md): the guest's reads
 * and the background fill take the objects from a peer site (a `vmdn serve`
 * over the pull cache of a site that pulled the image), each verified; the
 * origin serves the manifest and little else, and the export reads as the image.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';
import { qemuCompare, vmdn, vmdnOk, waitFor } from '../helpers/cli.js';
import { hasQemuTools } from './raw-client.js';
import { countObjects } from '../helpers/store-objects.js';
import { startServe, type Served } from '../helpers/serve.js';
import { startNbd } from '../helpers/nbd-run.js';

const skip = hasQemuTools() ? false : 'qemu-img/qemu-io not installed (scripts/ensure-debian-tools.mjs installs them)';

async function objectRequests(url: string): Promise<number> {
  return ((await (await fetch(`${url}/stats`)).json()) as { objectRequests: number }).objectRequests;
}

describe('vmdn nbd --from with a peer', { skip }, () => {
  const t = tmpDir('vmdn-nbd-peers-');
  const disk = path.join(t.dir, 'disk.raw');
  let origin: Served;
  let peer: Served;
  let total = 0;

  before(async () => {
    fs.writeFileSync(disk, prng(29, 8 << 20));
    fs.truncateSync(disk, 16 << 20);
    const originStore = path.join(t.dir, 'origin');
    vmdnOk(originStore, ['import', disk, '--name', 'img:1']);
    total = await countObjects(originStore);
    origin = await startServe(originStore);
    // site A pulled the image and serves its pull cache
    const acache = path.join(t.dir, 'acache');
    vmdnOk(acache, ['pull', origin.url, 'img:1', path.join(t.dir, 'a.raw')]);
    peer = await startServe(acache);
  });
  after(async () => {
    await peer?.stop();
    await origin?.stop();
    t.cleanup();
  });

  it('reads as the image and fills from the peer: the origin serves the manifest, the peer the chunks', { timeout: 120_000 }, async () => {
    const cache = path.join(t.dir, 'bcache');
    const sock = path.join(t.dir, 'b.sock');
    const fromOrigin = await objectRequests(origin.url);
    const fromPeer = await objectRequests(peer.url);
    const s = await startNbd(cache, ['img:1', '--from', origin.url, '--peer', peer.url, '--cache', cache, '--socket', sock, '--readonly']);
    try {
      const c = qemuCompare(disk, `nbd+unix:///img:1?socket=${sock}`);
      assert.ok(c.identical, c.out);
      await waitFor(() => s.last().fillDone === true, 60_000, 'the fill');
      const o = (await objectRequests(origin.url)) - fromOrigin;
      const p = (await objectRequests(peer.url)) - fromPeer;
      // the manifest (and the profile lookup's answers) from the origin; every chunk from the peer
      assert.ok(o <= 2, `origin served ${o} objects of ${total}`);
      assert.ok(p >= total - 1, `peer served ${p} objects of ${total}`);
    } finally {
      await s.stop();
    }
  });

  it('--peer without --from is a usage error', () => {
    const r = vmdn(path.join(t.dir, 'origin'), ['nbd', 'img:1', '--socket', path.join(t.dir, 'x.sock'), '--peer', peer.url]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stdout + r.stderr, /--peer and --peers go with --from/);
  });
});
